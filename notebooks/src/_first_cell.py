# NBVAL_IGNORE_OUTPUT
# Same first cell in every labkit notebook: on Colab install labkit and turn on widgets; pick cuda when present;
# print where and when this run happened (machine, load average, date).
import subprocess
import sys

if "google.colab" in sys.modules:
    LABKIT = "git+https://github.com/YOUR-ORG/labkit"  # placeholder: this repository's URL, or "labkit" from PyPI
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", LABKIT], check=True)
    from google.colab import output

    output.enable_custom_widget_manager()

from labkit.lab.widgets import ci_scale, notebook_setup

DEVICE = notebook_setup()  # "cuda" when a GPU is present, else "cpu"; prints the run's record
