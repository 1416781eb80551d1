"""Seed prompts for MTP self-distillation: the target continues them, and the drafter learns from that text.

Written for this purpose and disjoint from the evaluation prompts in ``labkit/data/prompts.json`` (checked by
tests/test_mtp.py). The formats echo common uses of a base model (dialogue, code, articles, Q&A, maths,
translation, prose, lists) so that the self-generated text covers the states the drafter meets later; the
contents differ.
"""

from __future__ import annotations

TRAIN = [
    # dialogue
    "User: How do I keep my bread from going stale so quickly?\nAssistant:",
    "User: What is a good way to start running if I have never done sport?\nAssistant:",
    "User: Can you explain what a mortgage is in simple words?\nAssistant:",
    "User: I want to learn to cook. Which dishes should I try first?\nAssistant:",
    "User: My cat scratches the sofa all the time. How can I stop her?\nAssistant:",
    "User: What are some tips for giving a short speech at a wedding?\nAssistant:",
    "User: How do I write a polite email asking for a deadline extension?\nAssistant:",
    "User: Which houseplants survive in a room with little light?\nAssistant:",
    "User: I feel tired every afternoon. What could help?\nAssistant:",
    "User: How can I save money on groceries each month?\nAssistant:",
    "User: What should I know before adopting a dog?\nAssistant:",
    "User: Could you suggest a weekend plan for visiting a big city on a budget?\nAssistant:",
    "Customer: Hello, my order arrived damaged. What can I do?\nAgent:",
    "Student: Why do we need to learn fractions?\nTeacher:",
    # code
    "def reverse_words(sentence: str) -> str:\n"
    "    \"\"\"Return the sentence with the order of its words reversed.\"\"\"\n",
    "def count_vowels(text):\n    \"\"\"Count the vowels in text.\"\"\"\n",
    "import os\n\n\ndef list_python_files(folder):\n",
    "class BankAccount:\n    def __init__(self, owner, balance=0):\n",
    "def merge_sorted(a, b):\n    \"\"\"Merge two sorted lists into one sorted list.\"\"\"\n",
    "# Compute the factorial of a number recursively\ndef factorial(n):\n",
    "def flatten(nested):\n    \"\"\"Flatten a list of lists.\"\"\"\n",
    "import json\n\nwith open('config.json') as f:\n",
    "for i in range(1, 101):\n    if i % 15 == 0:\n",
    "SELECT name, COUNT(*) AS orders\nFROM customers\n",
    "function capitalize(word) {\n",
    "#include <stdio.h>\n\nint main(void) {\n",
    "def word_frequencies(text):\n    counts = {}\n",
    "async def fetch_all(urls):\n",
    "const numbers = [4, 8, 15, 16, 23, 42];\n",
    "def celsius_to_fahrenheit(c):\n",
    # articles and summaries
    "Article: A new bridge over the river opened this morning after three years of construction. Drivers say the "
    "trip to the city centre is now ten minutes shorter.\nSummary:",
    "Article: Scientists have found a species of frog that can change colour within minutes. The frog lives in the "
    "rain forest and was first seen by a local guide.\nSummary:",
    "Article: The museum will stay open late every Friday this summer, with free concerts in the courtyard and "
    "guided tours at night.\nSummary:",
    "Article: Farmers in the valley report the best apple harvest in a decade, thanks to a mild spring and few "
    "late frosts.\nSummary:",
    "News: The city plans to plant ten thousand trees over the next five years",
    "Report: Sales of bicycles rose sharply last year as more people",
    "The annual meeting of the chess club took place on Saturday.",
    # questions and answers
    "Question: What is the boiling point of water at sea level?\nAnswer:",
    "Question: Who painted the Mona Lisa?\nAnswer:",
    "Question: What is the capital of Canada?\nAnswer:",
    "Question: How does a rainbow form?\nAnswer:",
    "Question: What do bees make from nectar?\nAnswer:",
    "Question: Why do leaves change colour in autumn?\nAnswer:",
    "Question: What is the longest river in Africa?\nAnswer:",
    "Question: How many legs does a spider have?\nAnswer:",
    "Q: What is photosynthesis?\nA:",
    "Q: Which metal is liquid at room temperature?\nA:",
    "Q: What causes the seasons on Earth?\nA:",
    # mathematics
    "Problem: A rectangle is 8 cm long and 5 cm wide. What is its area?\nSolution:",
    "Problem: Tom has 24 apples and gives a third of them away. How many does he keep?\nSolution:",
    "Problem: What is 7 times 8 plus 6?\nSolution:",
    "Problem: A car uses 6 litres of fuel per 100 km. How much fuel does it need for 250 km?\nSolution:",
    "Problem: Solve for y: 3y - 4 = 11.\nSolution:",
    "Problem: A shirt costs 40 dollars and is on sale for 25% off. What is the sale price?\nSolution:",
    "Problem: Find the perimeter of a square with sides of 9 m.\nSolution:",
    "Exercise 3. Compute the sum of the first ten even numbers.\nAnswer:",
    "Let x be a real number such that x^2 = 49. Then",
    # translation
    "Translate English to French.\nEnglish: I am reading a book about the history of Paris.\nFrench:",
    "Translate English to Spanish.\nEnglish: The children are playing in the garden.\nSpanish:",
    "Translate English to German.\nEnglish: Can you help me find my keys?\nGerman:",
    "Translate English to Italian.\nEnglish: We are going to the beach tomorrow morning.\nItalian:",
    "Translate English to Portuguese.\nEnglish: The restaurant opens at seven in the evening.\nPortuguese:",
    "Translate English to French.\nEnglish: My sister works in a hospital.\nFrench:",
    "Translate English to Spanish.\nEnglish: How much does this ticket cost?\nSpanish:",
    "Translate English to German.\nEnglish: The train is late again today.\nGerman:",
    "French: Bonjour, je voudrais réserver une chambre pour deux nuits.\nEnglish:",
    "Spanish: El perro duerme debajo de la mesa.\nEnglish:",
    "Le matin, la ville est calme et",
    "En el centro del pueblo hay una plaza con",
    "Die Stadt liegt am Ufer eines großen Sees und",
    # prose and lists
    "Once upon a time, in a village at the edge of a forest,",
    "The old lighthouse keeper looked out at the sea and",
    "It was the first day of school, and Maya",
    "Chapter 1\n\nThe rain had not stopped for three days when",
    "Here are five tips for better sleep:\n1.",
    "Ingredients:\n- 2 cups of flour\n-",
    "How to change a flat tyre:\nStep 1:",
    "The history of the printing press begins",
    "Dear Sir or Madam,\n\nI am writing to",
    "Meeting notes, Monday\nAttendees:",
    "Top 10 places to visit in Europe:\n1.",
    "The mitochondria is the part of the cell that",
    "In computer science, a hash table is",
    "The French Revolution began in 1789 when",
    "Water is made of two elements:",
    "A good resume should include",
    "The weather forecast for tomorrow:",
    "Product review: I bought these headphones last month and",
    "Abstract: We study the effect of",
    "Instructions: Read the text below and answer the questions.\n\nText:",
    "Title: A walk in the mountains\n\n",
    "Pros and cons of working from home:\nPros:",
    "Glossary\n\nAlgorithm:",
    "The main causes of the First World War were",
    "My favourite season is autumn because",
    "To make a cup of tea, first",
]

# Held out from training: the greedy acceptance evaluation of ``labkit train-mtp`` runs on their continuations.
HELDOUT = [
    "User: What is the best way to learn a new language?\nAssistant:",
    "User: How should I prepare for a job interview?\nAssistant:",
    "def is_palindrome(s: str) -> bool:\n",
    "class Queue:\n    def __init__(self):\n",
    "Article: The library will lend tools such as drills and ladders to members starting next month.\nSummary:",
    "Question: What is the tallest mountain in the world?\nAnswer:",
    "Question: Who discovered penicillin?\nAnswer:",
    "Problem: A book costs 12 dollars. How much do 5 books cost?\nSolution:",
    "Problem: Solve for x: 5x + 3 = 28.\nSolution:",
    "Translate English to French.\nEnglish: The museum is closed on Mondays.\nFrench:",
    "Translate English to Spanish.\nEnglish: I would like a glass of water.\nSpanish:",
    "Translate English to German.\nEnglish: Our house has a small garden.\nGerman:",
    "The ocean covers most of the surface of the Earth and",
    "Here are three reasons to learn to play an instrument:\n1.",
    "In physics, energy is",
    "The village festival takes place every summer and",
]

# ---------------------------------------------------------------------------------------------------- at scale
# 95 hand-written seeds are too few for hundreds of thousands of positions: greedy continuations of one seed are
# identical, so data would repeat. Formats x topics give ~1,150 more (v2: ~1,700), a share of them in Gemma's chat
# format (what people feed an instruction-tuned Gemma); the topics avoid the held-out and evaluation subjects.

TOPICS = [
    "volcanoes", "the water cycle", "solar panels", "honey bees", "the Roman Empire", "chess openings",
    "public transport", "recycling plastic", "the human heart", "black holes", "coffee farming", "electric cars",
    "the Great Wall of China", "migrating birds", "compound interest", "vaccines", "the printing of money",
    "coral reefs", "desert plants", "the Olympic Games", "jazz music", "bread baking", "earthquakes", "glaciers",
    "the stock market", "sleep and memory", "ancient Egypt", "wind turbines", "the immune system", "tea ceremonies",
    "recursion in programming", "database indexes", "version control with git", "unit testing", "binary numbers",
    "regular expressions", "sorting algorithms", "web servers", "spreadsheets", "password security",
    "the moon landing", "photosynthesis in algae", "rainforests", "sharks", "the Silk Road", "origami",
    "gardening in small spaces", "marathon training", "budget travel", "learning to swim", "first aid",
    "composting", "the French language", "board games", "renewable energy", "time zones", "the metric system",
    "thunderstorms", "penguins", "the internet", "medieval castles", "dinosaurs", "paper making", "bicycles",
]

FORMATS = [
    "User: Can you tell me something interesting about {t}?\nAssistant:",
    "User: Explain {t} to a ten-year-old.\nAssistant:",
    "User: What are common misconceptions about {t}?\nAssistant:",
    "<start_of_turn>user\nGive me a short overview of {t}.<end_of_turn>\n<start_of_turn>model\n",
    "<start_of_turn>user\nWrite three quiz questions about {t}, with answers.<end_of_turn>\n<start_of_turn>model\n",
    "<start_of_turn>user\nWhy should I care about {t}?<end_of_turn>\n<start_of_turn>model\n",
    "Question: What is the most important fact about {t}?\nAnswer:",
    "Q: How would you describe {t} in one paragraph?\nA:",
    "Encyclopedia entry: {t}\n\n",
    "Lecture notes on {t}\n\nIntroduction\n",
    "Five facts about {t}:\n1.",
    "A short story that involves {t}:\n\n",
    "Blog post: What I learned about {t} this year\n\n",
    "Summary of a documentary about {t}:",
    "Translate English to French.\nEnglish: I read an article about {t} yesterday.\nFrench:",
    "Translate English to Spanish.\nEnglish: My teacher talked about {t} today.\nSpanish:",
    "# A Python script that prints facts about {t}\nfacts = [\n",
    "Frequently asked questions about {t}\n\nQ:",
]

# Issue 17 ("v2" seeds): more of the formats where held-out and bench acceptance were lowest (translation, code,
# chat). Kept apart so the first head's recipe (and notebooks 07 and 09, which train from it) stays reproducible.
MORE_FORMATS = [
    "Translate English to German.\nEnglish: We watched a film about {t} last night.\nGerman:",
    "Translate English to Italian.\nEnglish: Tell me more about {t}, please.\nItalian:",
    "Translate French to English.\nFrench: Nous avons parlé de {t} pendant le dîner.\nEnglish:",
    "Translate English to Portuguese.\nEnglish: The book about {t} is on the table.\nPortuguese:",
    "def describe(topic: str) -> str:\n    \"\"\"Return a one-line description of a topic such as {t}.\"\"\"\n",
    "// A JavaScript object with notes about {t}\nconst notes = {{\n",
    "<start_of_turn>user\nI have a question about {t}.<end_of_turn>\n<start_of_turn>model\nOf course! What would "
    "you like to know?<end_of_turn>\n<start_of_turn>user\nWhat is the main idea?<end_of_turn>\n"
    "<start_of_turn>model\n",
    "User: I am writing a school report on {t}. Can you help me plan it?\nAssistant:",
]


# Summaries: the bench category the v2 head accepted least (0.18 first-position acceptance, issue 17). None of v1's
# or v2's formats is an article followed by "Summary:". A short templated article per topic (disjoint from
# prompts.json's articles), then the cue; extra shards are generated with this set alone (--seed-set summaries).
SUMMARY_FORMATS = [
    "Article: A new study of {t} was published on Monday. The authors spent three years collecting data and say "
    "the results surprised them. They will present the work at a conference in the autumn.\nSummary:",
    "Article: The city museum opened an exhibition about {t} this weekend. More than two thousand visitors came on "
    "the first day, and the organisers have extended the opening hours.\nSummary:",
    "Article: Teachers in the region want more lessons about {t}. A survey of four hundred schools found that most "
    "pupils knew little about it, and a pilot course starts in January.\nSummary:",
    "Article: A local group has raised money to support research on {t}. The funds will pay for two students and "
    "new equipment, and the first results are expected next year.\nSummary:",
    "<start_of_turn>user\nSummarize this in one sentence: Interest in {t} has grown quickly. Online searches "
    "doubled in two years, and several new books on the subject appeared this spring.<end_of_turn>\n"
    "<start_of_turn>model\n",
    "<start_of_turn>user\nGive me the key points of this note: The committee discussed {t} for an hour, agreed to "
    "ask experts for advice and will meet again in March.<end_of_turn>\n<start_of_turn>model\n",
    "Text: A documentary crew followed experts on {t} for six months. The film shows their daily work and the "
    "problems they face, and it will be broadcast in December.\nTL;DR:",
    "Report: Volunteers recorded what they learned about {t} in a shared notebook. After a year it held more than "
    "five hundred entries, which the group now plans to publish.\nIn short:",
]


def generated_prompts(formats: list[str] | None = None) -> list[str]:
    """Every format with every topic, in a fixed order (the caller shuffles with its own seed)."""
    return [f.format(t=t) for t in TOPICS for f in (formats or FORMATS)]


TRAIN_AT_SCALE = TRAIN + generated_prompts()  # "v1": the first head's seeds (the shipped one continued on v2)
TRAIN_AT_SCALE_V2 = TRAIN + generated_prompts(FORMATS + MORE_FORMATS)
SUMMARIES = generated_prompts(SUMMARY_FORMATS)
SEED_SETS = {"v1": TRAIN_AT_SCALE, "v2": TRAIN_AT_SCALE_V2, "summaries": SUMMARIES}
