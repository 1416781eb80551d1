"""Live views for JupyterLab: a token strip (anywidget) and dashboards that subscribe to the engine's rounds.

Every view here is a hook: pass it in ``SpeculativeDecoder(..., hooks=[view])`` and it fills while the model
generates (traitlet and FigureWidget updates reach the browser as they happen). Views only observe; they never
change what the engine does.
"""

from labkit.lab.background import BackgroundRun, PolicySweep, SpeedSweep, Stopped, TrainingMonitor
from labkit.lab.live import KVTimeline, LiveDashboard, RoundStepper, TokenStrip
from labkit.lab.notebook import ci_scale, in_colab, notebook_setup, run_record, static_images

# The notebooks import every view from here; each lives in the module named after its job.
__all__ = ["BackgroundRun", "KVTimeline", "LiveDashboard", "PolicySweep", "RoundStepper", "SpeedSweep", "Stopped",
           "TokenStrip", "TrainingMonitor", "ci_scale", "in_colab", "notebook_setup", "run_record", "static_images"]
