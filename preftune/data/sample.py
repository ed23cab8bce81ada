"""Deterministic sample preference data.

``preftune sample`` writes these records so users can see the shape of data preftune expects,
and the tiny end-to-end training runs learn from them. Each record pairs a prompt with two to
four responses ranked best first: the best answer is helpful, correct, specific and polite,
while the others are, from mildest to worst, too short, vague, off-topic, factually wrong or
dismissive. That ordering is the same in every record, so a small model can learn it.

Prompts come from a hand-written bank plus slot-filled templates (languages and tasks, places
and seasons, amounts and rates, ...) whose answers are built from the same slots, so large
datasets stay varied and on-topic. Everything is drawn from one ``random.Random(seed)`` stream
that is consumed the same way per record, so the first k records do not depend on how many are
requested.
"""

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import combinations
from math import gcd
from typing import TypeVar

__all__ = ["CATEGORIES", "SampleRecord", "generate_samples", "iter_samples"]

CATEGORIES: tuple[str, ...] = (
    "coding",
    "science",
    "cooking",
    "travel",
    "health",
    "finance",
    "writing",
    "history",
)


@dataclass(frozen=True)
class SampleRecord:
    """One prompt with its responses ranked best first, worst last."""

    prompt: str
    responses: tuple[str, ...]
    category: str
    system: str | None = None


_T = TypeVar("_T")
_Rand = Callable[[], float]
# prompt, good answer, then the bad answers that depend on the prompt: too short, vague, wrong
_Parts = tuple[str, str, str, str, str]
_Source = Callable[[_Rand], _Parts]
# (prompt, good, short, wrong) for the hand-written bank; vague answers come from a pool
_BankItem = tuple[str, str, str, str]


def _pick(rand: _Rand, seq: Sequence[_T]) -> _T:
    # Faster than Random.choice and just as deterministic for a given stream.
    return seq[int(rand() * len(seq))]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _money(cents: int) -> str:
    return f"${cents // 100:,}.{cents % 100:02d}"


_DISMISSIVE: tuple[str, ...] = (
    "Just Google it.",
    "That's a pretty basic question. You should already know this.",
    "I'm not going to explain that. Look it up yourself.",
    "Why are you even asking this? Figure it out.",
    "Honestly, this isn't worth my time.",
    "Ask someone else.",
    "Does it really matter? Just do whatever you want.",
    "Everyone knows this already. Come on.",
    "Not my problem.",
    "You could have searched for this in two seconds.",
    "Seriously? Use your head.",
    "I don't have time for questions like this.",
)

_OFF_TOPIC_BY_CATEGORY: dict[str, tuple[str, ...]] = {
    "coding": (
        "To undo your last Git commit but keep the changes, run `git reset --soft HEAD~1`.",
        "In Python, you can reverse a list in place with `my_list.reverse()`.",
        "Tabs versus spaces is mostly a matter of team convention; just be consistent.",
        "A good variable name describes what the value means, not its type.",
    ),
    "science": (
        "The Moon takes about 27 days to orbit Earth.",
        "At sea level, water boils at 100°C (212°F).",
        "Octopuses have three hearts and blue blood.",
        "Jupiter is the largest planet in our solar system.",
    ),
    "cooking": (
        "For fluffy pancakes, don't overmix the batter; a few lumps are fine.",
        "Store tomatoes at room temperature for the best flavor.",
        "Salt your pasta water generously before adding the pasta.",
        "Let a steak rest for a few minutes after cooking so the juices redistribute.",
    ),
    "travel": (
        "Kyoto is especially beautiful in autumn, when the maple leaves change color.",
        "Check whether your destination requires a visa before you book your flights.",
        "A window seat is best if you want to sleep on a long flight.",
        "Many museums offer free or discounted entry on certain days of the month.",
    ),
    "health": (
        "Stretching after a workout can help you maintain flexibility.",
        "Eating more fiber, such as beans and whole grains, supports healthy digestion.",
        "Wear sunscreen every day, even when it's cloudy.",
        "Drinking water throughout the day helps you stay hydrated.",
    ),
    "finance": (
        "Index funds are a low-cost way to invest in the whole stock market.",
        "Comparing phone plans once a year can lower your monthly bills.",
        "Pay your credit card balance in full each month to avoid interest.",
        "Checking your own credit report doesn't hurt your credit score.",
    ),
    "writing": (
        "A haiku has three lines of five, seven and five syllables.",
        "Always proofread your emails before you send them.",
        "Use the Oxford comma consistently if your style guide calls for it.",
        "Reading your work aloud is a great way to catch awkward sentences.",
    ),
    "history": (
        "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
        "Julius Caesar was assassinated on the Ides of March in 44 BCE.",
        "The Great Wall of China was built and rebuilt over many centuries.",
        "The first modern Olympic Games were held in Athens in 1896.",
    ),
}

_VAGUE_BY_CATEGORY: dict[str, tuple[str, ...]] = {
    "coding": (
        "It depends on your setup. There are a lot of ways to approach it, so just try something "
        "and see what happens.",
        "Programming is complicated and there's no single answer. You'll figure it out with "
        "experience.",
        "Check the documentation; it's all explained somewhere.",
    ),
    "science": (
        "Science is complicated, and scientists are still arguing about a lot of this.",
        "It has to do with physics and nature in general. It's hard to explain.",
        "There are many factors involved, so it's difficult to say.",
    ),
    "cooking": (
        "Cooking is really about feel, so just do what seems right to you.",
        "Everyone does it differently. Just experiment until it turns out okay.",
        "It depends on your kitchen and your ingredients.",
    ),
    "travel": (
        "Every trip is different, so it really depends.",
        "Just go with the flow and you'll be fine.",
        "It depends on where you're going and what you like.",
    ),
    "health": (
        "Everyone's body is different, so it's hard to say.",
        "Just listen to your body and you'll be fine.",
        "It depends on a lot of things, honestly.",
    ),
    "finance": (
        "Money is complicated, and it depends on your situation.",
        "Just be smart with your money and it'll work out.",
        "Markets are unpredictable, so nobody really knows.",
    ),
    "writing": (
        "Writing is subjective, so just write whatever feels right.",
        "It depends on your style. There aren't really any rules.",
        "Just keep writing and it'll get better eventually.",
    ),
    "history": (
        "History is complicated, and there are lots of opinions about it.",
        "It was a long time ago, so it's hard to say what really happened.",
        "A lot of things happened around then, and they were all important in their own way.",
    ),
}

_GENERIC_SYSTEM: tuple[str, ...] = (
    "You are a helpful assistant.",
    "You are a helpful, honest and harmless assistant.",
    "You are a friendly assistant. Give clear, accurate and practical answers.",
    "Answer the user's question accurately and politely. Use short numbered steps when they help.",
    "You are a knowledgeable assistant. Be concise, correct and kind.",
)

_CATEGORY_SYSTEM: dict[str, str] = {
    "coding": "You are an experienced software engineer who explains things clearly and gives "
    "working examples.",
    "science": "You are a science teacher who explains ideas accurately and adapts to the "
    "listener's level.",
    "cooking": "You are a professional chef who gives practical, food-safe cooking advice.",
    "travel": "You are an experienced travel advisor who gives specific, practical tips.",
    "health": "You are a careful health information assistant. Give general guidance and suggest "
    "seeing a doctor when appropriate.",
    "finance": "You are a personal finance educator. Explain things clearly and show your "
    "calculations.",
    "writing": "You are a writing coach who gives specific, constructive advice.",
    "history": "You are a historian who answers accurately and explains why events matter.",
}

_SYSTEM_RATE = 0.15

# Mostly empty, so about 30% of prompts get an opener and 25% a closing remark.
_PREFIXES: tuple[str, ...] = ("",) * 16 + (
    "Hi! ",
    "Hello. ",
    "Quick question. ",
    "Hey there. ",
    "I need some help. ",
    "Can you help me with something? ",
    "Hi, I'm hoping you can help. ",
)
_SUFFIXES: tuple[str, ...] = ("",) * 12 + (
    " Thanks!",
    " Thanks in advance.",
    " Please keep it practical.",
    " I'd appreciate a clear answer.",
)


_BANK: dict[str, tuple[_BankItem, ...]] = {
    "coding": (
        (
            "What is the difference between a list and a tuple in Python?",
            "Both store ordered sequences, but a list is mutable and a tuple is immutable. You "
            "can append, remove or change items in a list, while a tuple can't be changed after "
            "it's created. Because tuples are immutable, they're hashable when their items are, "
            "so they can be used as dictionary keys or set members. Use a list for collections "
            "that change and a tuple for fixed groups of values, like coordinates.",
            "Lists can be changed; tuples can't.",
            "There's no real difference; tuples are just lists written with parentheses, and you "
            "can append to both.",
        ),
        (
            "What does git rebase do?",
            "`git rebase` moves your commits so they start from a new base commit. For example, "
            "running `git rebase main` on a feature branch replays your feature commits on top "
            "of the latest `main`, giving a linear history without a merge commit. Because it "
            "rewrites commit hashes, avoid rebasing commits that others have already pulled; use "
            "it on your own local or feature branches.",
            "It replays your commits on top of another branch.",
            "It deletes the branch you're on and downloads a fresh copy of the remote repository.",
        ),
        (
            "How can I make my SQL query faster?",
            "Start by running `EXPLAIN` (or `EXPLAIN ANALYZE`) to see how the database executes "
            "the query. Then:\n"
            "1. Add indexes on columns used in `WHERE`, `JOIN` and `ORDER BY` clauses.\n"
            "2. Select only the columns you need instead of `SELECT *`.\n"
            "3. Avoid wrapping indexed columns in functions, which can stop the index from being "
            "used.\n"
            "4. Filter rows as early as possible.\n"
            "Re-run the query plan after each change to confirm it helps.",
            "Add an index.",
            "Indexes always make queries slower, so drop all of them and use `SELECT *` "
            "everywhere.",
        ),
        (
            "What is a race condition?",
            "A race condition happens when a program's result depends on the timing of threads "
            "or processes that access shared data at the same time. For example, two threads "
            "both read a counter as 5, both add 1 and both write 6, so one increment is lost. "
            "You prevent it by synchronizing access, for example with locks or atomic "
            "operations, or by avoiding shared mutable state altogether.",
            "It's a timing bug between threads that share data.",
            "A race condition is when your code runs too fast for the CPU, and the only fix is "
            "adding sleep calls.",
        ),
        (
            "Why should I write unit tests?",
            "Unit tests check small pieces of code in isolation, so you find bugs early, when "
            "they're cheapest to fix. They also let you refactor with confidence, because a "
            "failing test tells you right away if you broke existing behavior. Well-named tests "
            "double as documentation that shows how a function is meant to be used. Start with "
            "the code that's most critical or most likely to break.",
            "They catch bugs early.",
            "Unit tests prove your program has no bugs at all, so once they pass you never need "
            "any other testing.",
        ),
        (
            "What is the difference between == and === in JavaScript?",
            "`===` is strict equality: it returns true only if both values have the same type "
            "and value. `==` is loose equality: it converts the operands to a common type before "
            'comparing, so `0 == "0"` and `null == undefined` are both true. Most style guides '
            "recommend `===` because its behavior is predictable.",
            "`===` doesn't convert types; `==` does.",
            "`===` is just a faster version of `==`; they always give the same result.",
        ),
        (
            "What is Big O notation?",
            "Big O notation describes how an algorithm's running time or memory use grows as the "
            "input gets larger, ignoring constant factors. For example, finding an item by "
            "scanning a list is O(n), while binary search on a sorted list is O(log n). It helps "
            "you compare algorithms and predict how they'll behave on large inputs.",
            "It describes how running time grows with input size.",
            "Big O tells you exactly how many seconds a program takes to run on your computer.",
        ),
        (
            "How do I exit Vim?",
            "Press `Esc` to make sure you're in normal mode, then type `:q` and press Enter to "
            "quit. If you have unsaved changes, use `:wq` to save and quit, or `:q!` to quit "
            "without saving. `:x` also saves and quits, but only writes the file if it changed.",
            "Press Esc and type `:q`.",
            "Press Ctrl+C twice; that saves your file and closes Vim.",
        ),
    ),
    "science": (
        (
            "Why is the sky blue?",
            "Sunlight contains all colors, and as it passes through the atmosphere it scatters "
            "off gas molecules. Shorter wavelengths like blue scatter much more strongly than "
            "longer ones like red, an effect called Rayleigh scattering. That scattered blue "
            "light reaches your eyes from every direction, so the sky looks blue. At sunrise and "
            "sunset, light travels through more air, most of the blue is scattered away, and "
            "reds and oranges dominate.",
            "Air molecules scatter blue light more than red.",
            "The sky is blue because it reflects the color of the oceans.",
        ),
        (
            "How do vaccines work?",
            "A vaccine trains your immune system to recognize a specific germ without causing "
            "the disease. It contains a harmless piece or weakened version of the pathogen, or "
            "instructions, such as mRNA, for making one of its proteins. Your body responds by "
            "making antibodies and memory cells. If you're later exposed to the real germ, your "
            "immune system recognizes it and responds faster and more strongly.",
            "They train your immune system to recognize a germ.",
            "Vaccines work like antibiotics: they kill the germs that are already in your body.",
        ),
        (
            "What is the difference between a virus and a bacterium?",
            "Bacteria are single-celled living organisms that can reproduce on their own, and "
            "many are harmless or even helpful. Viruses are much smaller and can't reproduce by "
            "themselves; they have to infect a host cell and use its machinery to make copies. "
            "That's why antibiotics can treat bacterial infections but don't work against "
            "viruses.",
            "Bacteria are living cells; viruses need a host cell to reproduce.",
            "They're the same thing, and antibiotics cure both.",
        ),
        (
            "Why do we have seasons?",
            "Seasons happen because Earth's axis is tilted by about 23.5 degrees relative to its "
            "orbit. When your hemisphere is tilted toward the Sun, sunlight hits it more "
            "directly and days are longer, so it's summer. When it's tilted away, sunlight is "
            "spread out and days are shorter, so it's winter. That's also why the Northern and "
            "Southern Hemispheres have opposite seasons.",
            "Because Earth's axis is tilted.",
            "Summer happens when Earth is closest to the Sun, and winter when it's farthest away.",
        ),
        (
            "How fast does light travel?",
            "In a vacuum, light travels at exactly 299,792,458 meters per second, or about "
            "300,000 kilometers per second. At that speed, sunlight takes about 8 minutes and 20 "
            "seconds to reach Earth. Light moves more slowly through materials like water or "
            "glass, which is what causes refraction.",
            "About 300,000 kilometers per second.",
            "Light travels at about 343 meters per second, the same speed as sound.",
        ),
        (
            "Why does ice float on water?",
            "Ice is less dense than liquid water. When water freezes, hydrogen bonds lock its "
            "molecules into a hexagonal crystal that holds them farther apart than in the "
            "liquid, making ice about 9% less dense, so it floats. This matters for life: lakes "
            "freeze from the top down, and the ice layer insulates the water below.",
            "Ice is less dense than liquid water.",
            "Ice floats only because it contains trapped air bubbles; pure ice would sink.",
        ),
        (
            "What causes thunder?",
            "Thunder is caused by lightning. A lightning bolt heats the air around it to roughly "
            "30,000 kelvin in a fraction of a second, so the air expands explosively and creates "
            "a shock wave that we hear as thunder. Because light travels much faster than sound, "
            "you see the flash first; counting the seconds until the thunder and dividing by "
            "three gives the distance in kilometers.",
            "Lightning rapidly heats and expands the air.",
            "Thunder is the sound of clouds bumping into each other.",
        ),
    ),
    "cooking": (
        (
            "How do I cook rice on the stove?",
            "For long-grain white rice:\n"
            "1. Rinse 1 cup of rice until the water runs mostly clear.\n"
            "2. Bring it to a boil with about 1 1/2 cups of water and a pinch of salt.\n"
            "3. Cover, turn the heat to low and simmer for 15 to 18 minutes.\n"
            "4. Take it off the heat and let it rest, covered, for 5 to 10 minutes, then fluff "
            "with a fork.\n"
            "Avoid lifting the lid while it simmers so the steam stays in.",
            "Simmer it covered in about 1 1/2 times as much water.",
            "Boil the rice uncovered in ten cups of water for an hour, stirring constantly.",
        ),
        (
            "How can I keep a cut avocado from turning brown?",
            "Browning happens when the flesh is exposed to oxygen, so the goal is to limit air "
            "contact. Brush the cut surface with lemon or lime juice, press plastic wrap "
            "directly onto it and store it in the fridge. Leaving the pit in only protects the "
            "part it covers. Stored this way, a cut avocado usually stays green for about a day.",
            "Cover it with lemon juice and plastic wrap.",
            "Leaving the pit in keeps the whole avocado green for a week, even on the counter.",
        ),
        (
            "Why did my homemade bread come out dense?",
            "Dense bread usually means the dough didn't rise enough or the gluten didn't "
            "develop. Common causes are old or dead yeast, water that was too hot (around 60°C "
            "or more kills yeast), too little kneading, or cutting the rise short in a cold "
            "kitchen. Check that your yeast foams in warm water with a pinch of sugar, knead "
            "until the dough is smooth and elastic, and let it rise until it roughly doubles in "
            "size.",
            "It probably didn't rise enough.",
            "Bread is dense because of too much yeast; always use as little as possible, or none "
            "at all.",
        ),
        (
            "How do I sharpen a kitchen knife?",
            "The most reliable home method is a whetstone:\n"
            "1. Soak or wet the stone according to its instructions.\n"
            "2. Hold the blade at about 15 to 20 degrees to the stone.\n"
            "3. Sweep the whole edge across the coarse side, alternating sides, until you feel a "
            "small burr.\n"
            "4. Repeat on the fine side to polish the edge.\n"
            "A honing steel between sharpenings keeps the edge aligned, but it doesn't remove "
            "much metal.",
            "Use a whetstone at about 15 to 20 degrees.",
            "A honing steel grinds away lots of metal, so it's all you ever need to sharpen a "
            "dull knife.",
        ),
        (
            "How long can I keep cooked leftovers in the fridge?",
            "Most cooked leftovers are safe for 3 to 4 days in a fridge kept at 4°C (40°F) or "
            "below. Refrigerate them within two hours of cooking, in shallow containers so they "
            "chill quickly. If you won't eat them in that time, freeze them. When reheating, "
            "bring them to 74°C (165°F).",
            "About 3 to 4 days.",
            "Cooked leftovers are fine for at least three weeks as long as they don't smell bad.",
        ),
        (
            "What's the difference between baking soda and baking powder?",
            "Baking soda is pure sodium bicarbonate, so it needs an acid in the recipe, such as "
            "buttermilk, yogurt or lemon juice, to produce the carbon dioxide that makes batter "
            "rise. Baking powder already contains baking soda plus a dry acid, so it only needs "
            "moisture and heat. Baking soda is about three to four times stronger, so you can't "
            "swap them one-for-one.",
            "Baking soda needs an acid; baking powder already contains one.",
            "They're the same product with different names, so you can swap them one-for-one.",
        ),
        (
            "How do I stop pasta from sticking together?",
            "Use plenty of water, about 4 to 5 liters per 500 grams of pasta, and bring it to a "
            "full rolling boil before adding the pasta. Stir during the first minute or two, "
            "when the surface starch is stickiest. Skip the oil in the water, because it makes "
            "sauce slide off. Drain the pasta and toss it with sauce right away instead of "
            "letting it sit.",
            "Use lots of boiling water and stir early.",
            "Put the pasta in cold water and heat it up slowly; that's what stops it from "
            "sticking.",
        ),
    ),
    "travel": (
        (
            "How can I reduce jet lag?",
            "Start shifting your sleep by about an hour a day for a few days before you leave, "
            "toward your destination's time zone. On the flight, drink water and go easy on "
            "alcohol and caffeine. After you arrive, get outside in daylight, since light is the "
            "strongest signal for resetting your body clock, and try to stay awake until a "
            "normal local bedtime. A nap of 20 to 30 minutes is fine, but avoid long daytime "
            "sleeps.",
            "Get daylight at your destination and sleep on local time.",
            "Sleep as much as you can during the day after you land; that resets your body clock "
            "fastest.",
        ),
        (
            "What should I do if I lose my passport abroad?",
            "1. Report the loss to the local police and get a copy of the report.\n"
            "2. Contact your country's nearest embassy or consulate; they can issue an emergency "
            "travel document or a replacement passport.\n"
            "3. Bring any ID you have, passport photos and your travel details.\n"
            "4. Tell your airline if your flight is soon.\n"
            "Keeping a photo of your passport's main page on your phone makes all of this easier.",
            "Contact your embassy or consulate.",
            "Just go to the airport; the airline can print you a new passport at the check-in "
            "desk.",
        ),
        (
            "Is travel insurance worth it?",
            "It's often worth it for expensive or non-refundable trips and for travel abroad, "
            "where your regular health insurance may not cover you. Good policies cover "
            "emergency medical care, medical evacuation, trip cancellation and lost luggage. "
            "Before buying, check whether your credit card already includes some coverage, and "
            "read the exclusions, such as pre-existing conditions or adventure sports.",
            "Usually, for expensive or international trips.",
            "No, your home health insurance covers everything in every country, so travel "
            "insurance is useless.",
        ),
        (
            "How do I avoid pickpockets while traveling?",
            "Keep your phone and wallet in a front pocket or a zipped bag worn across your body, "
            "and be extra alert in crowded places like metro cars, markets and popular sights. "
            "Watch out for distractions, such as someone bumping into you or asking you to sign "
            "a petition. Carry only the cash and cards you need for the day, and leave a backup "
            "card at your accommodation.",
            "Keep valuables in a front pocket or a zipped bag.",
            "Keep your wallet in your back pocket; pickpockets never check there.",
        ),
        (
            "What's the best way to pack a carry-on bag?",
            "Roll soft clothes to save space and reduce wrinkles, and use packing cubes to stay "
            "organized. Put heavy items like shoes at the bottom, near the wheels. Keep liquids "
            "in containers of 100 ml or less in one clear bag so you can take it out at "
            "security, and keep medication, chargers and documents in your personal item. Check "
            "your airline's size and weight limits before you go.",
            "Roll your clothes and keep liquids in a clear bag.",
            "You can bring liquids in any size of bottle as long as they're in your carry-on.",
        ),
        (
            "How early should I get to the airport?",
            "A common rule is to arrive 2 hours before a domestic flight and 3 hours before an "
            "international one. Give yourself more time during holidays, at large or busy "
            "airports, or if you're checking a bag. Check-in and bag drop often close 45 to 60 "
            "minutes before departure, so look up your airline's cutoff.",
            "About 2 hours for domestic flights and 3 for international ones.",
            "Fifteen minutes before departure is plenty, even for an international flight with "
            "checked bags.",
        ),
        (
            "How can I find cheap flights?",
            "Be flexible where you can: flying midweek, at off-peak times or into a nearby "
            "airport is often cheaper. Use a fare comparison site to see prices across a whole "
            "month, and set price alerts for your route. Book a few weeks to a few months ahead "
            "rather than at the last minute, and compare the total cost, since budget airlines "
            "charge extra for bags and seats.",
            "Be flexible with your dates and set price alerts.",
            "Always book the night before you fly; airlines slash every fare at the last minute.",
        ),
    ),
    "health": (
        (
            "How much sleep do adults need?",
            "Most adults need 7 to 9 hours of sleep a night. Regularly getting less than 7 hours "
            "is linked to poorer concentration, weaker immunity and a higher risk of conditions "
            "like heart disease and diabetes. Going to bed and waking up at the same times every "
            "day, even on weekends, helps you get better-quality sleep.",
            "7 to 9 hours a night.",
            "Adults only need about 4 hours of sleep; anything more is just laziness.",
        ),
        (
            "How much exercise should I get each week?",
            "The WHO recommends that adults get 150 to 300 minutes of moderate aerobic activity "
            "a week, such as brisk walking, or 75 to 150 minutes of vigorous activity, like "
            "running. It also recommends muscle-strengthening activities on two or more days a "
            "week. Any amount is better than none, so if you're starting from zero, build up "
            "gradually.",
            "At least 150 minutes of moderate activity a week.",
            "Exercise only helps if you do at least three hours of it every single day.",
        ),
        (
            "Is it bad to skip breakfast?",
            "For most healthy adults, skipping breakfast isn't harmful by itself; what matters "
            "more is the overall quality and amount of food you eat during the day. Some people "
            "feel more focused after a morning meal, while others are fine waiting until lunch. "
            "If you have diabetes, are pregnant or take medication that needs food, ask your "
            "doctor about meal timing.",
            "Not necessarily; your overall diet matters more.",
            "Skipping breakfast stops your metabolism completely until your next meal.",
        ),
        (
            "How can I manage stress better?",
            "A few habits make a real difference:\n"
            "1. Move your body regularly; even a 20-minute walk helps.\n"
            "2. Protect your sleep with a consistent schedule.\n"
            "3. Try slow breathing, such as in for 4 seconds and out for 6, for a few minutes.\n"
            "4. Break big tasks into small steps and write them down.\n"
            "If stress has been affecting your daily life for weeks, talking to a doctor or "
            "therapist can help.",
            "Exercise, sleep well and take breaks.",
            "The best way to handle stress is to ignore it completely; it always goes away on "
            "its own.",
        ),
        (
            "How do I know if I'm dehydrated?",
            "Common signs include thirst, dark yellow urine, urinating less often, a dry mouth, "
            "tiredness, headache and dizziness. Pale straw-colored urine is a good sign you're "
            "drinking enough. Drink water regularly, and more in hot weather or when exercising. "
            "Seek medical help for confusion, a very fast heartbeat or fainting, or if someone "
            "can't keep fluids down.",
            "Thirst and dark urine are common signs.",
            "You can only be dehydrated if you feel extremely thirsty; no other symptoms matter.",
        ),
        (
            "Are standing desks good for you?",
            "Standing desks can help by breaking up long periods of sitting, which is linked to "
            "health risks. Standing all day has its own downsides, though, such as leg and back "
            "discomfort. The best approach is to switch between sitting and standing, for "
            "example every 30 to 60 minutes, and to add short walks. Set the desk so your elbows "
            "are bent at about 90 degrees and the top of the screen is around eye level.",
            "They help if you switch between sitting and standing.",
            "Standing all day burns so many calories that you don't need any other exercise.",
        ),
        (
            "When should I wash my hands?",
            "Wash your hands before preparing or eating food, after using the toilet, after "
            "blowing your nose, coughing or sneezing, after touching animals, and whenever they "
            "look dirty. Use soap and water and scrub for at least 20 seconds, including the "
            "backs of your hands, between your fingers and under your nails. When soap isn't "
            "available, use a hand sanitizer with at least 60% alcohol.",
            "Before eating and after using the toilet, for at least 20 seconds.",
            "Rinsing with water for a couple of seconds works just as well as washing with soap.",
        ),
    ),
    "finance": (
        (
            "What is an emergency fund?",
            "An emergency fund is money set aside for unexpected expenses, like a job loss, a "
            "medical bill or a car repair. A common guideline is to save three to six months of "
            "essential expenses. Keep it somewhere safe and easy to access, such as a high-yield "
            "savings account, rather than in stocks that could drop just when you need the money.",
            "Savings for unexpected expenses, usually 3 to 6 months of costs.",
            "An emergency fund should be invested in a few risky stocks so it grows as fast as "
            "possible.",
        ),
        (
            "What is the difference between APR and APY?",
            "APR, the annual percentage rate, is the yearly interest rate without the effect of "
            "compounding, and it's usually quoted for loans and credit cards. APY, the annual "
            "percentage yield, includes compounding, so it shows what you actually earn or pay "
            "over a year. For example, 12% APR compounded monthly works out to about 12.68% APY. "
            "When comparing savings accounts, look at the APY.",
            "APY includes compounding; APR doesn't.",
            "APR and APY are always the same number, just named differently by different banks.",
        ),
        (
            "What is an index fund?",
            "An index fund is a mutual fund or ETF that tracks a market index, such as the S&P "
            "500, by holding the same securities. Because it doesn't rely on managers picking "
            "stocks, its fees are usually low, and it gives you broad diversification in a "
            "single purchase. That makes index funds a popular choice for long-term investors.",
            "A low-cost fund that tracks a market index.",
            "An index fund guarantees a fixed return every year and can never lose value.",
        ),
        (
            "How does a credit score work?",
            "A credit score is a number lenders use to estimate how likely you are to repay "
            "debt. In the US, FICO scores range from 300 to 850 and are based mostly on your "
            "payment history and how much of your available credit you use, followed by the "
            "length of your credit history, new credit and your mix of credit types. Paying on "
            "time and keeping balances low relative to your limits are the most effective ways "
            "to improve it.",
            "It estimates how reliably you repay debt.",
            "Checking your own credit score lowers it by 100 points every time.",
        ),
        (
            "What is inflation?",
            "Inflation is the general rise in prices over time, which means each unit of money "
            "buys less. It's usually measured with a price index such as the Consumer Price "
            "Index. For example, with 3% annual inflation, something that costs $100 today would "
            "cost about $103 next year. Many central banks aim for inflation of around 2% a year.",
            "A general rise in prices over time.",
            "Inflation makes your cash worth more each year, so keeping money under the mattress "
            "is the smartest plan.",
        ),
        (
            "Should I pay off debt or invest?",
            "Compare the interest rate on your debt with the return you can reasonably expect "
            "from investing. High-interest debt, like credit cards charging 20% or more, should "
            "usually come first, because paying it off is a guaranteed return at that rate. With "
            "low-interest debt, such as a 3% mortgage, investing at the same time often makes "
            "sense. Either way, keep a small emergency fund and take any employer retirement "
            "match, since that's effectively free money.",
            "Pay off high-interest debt first.",
            "Always invest first; stock returns are guaranteed to beat any credit card interest "
            "rate.",
        ),
        (
            "What is diversification?",
            "Diversification means spreading your money across many investments, such as "
            "different companies, industries, countries and asset types, so one bad result "
            "doesn't sink your whole portfolio. It reduces risk without necessarily lowering "
            "expected returns much. A broad index fund is an easy way to diversify, since it "
            "holds hundreds or thousands of securities.",
            "Spreading your money across many investments to reduce risk.",
            "Diversification means putting all your money into the one stock you believe in most.",
        ),
    ),
    "writing": (
        (
            "How do I write a good cover letter?",
            "Keep it to one page and tailor it to the specific job.\n"
            "1. Open by naming the role and one strong reason you're a good fit.\n"
            "2. In the middle, give two or three concrete examples of results you achieved that "
            "match the job description.\n"
            "3. Close by restating your interest and inviting a conversation.\n"
            "Address it to a named person if you can, and proofread it carefully.",
            "Tailor it to the job and keep it to one page.",
            "Send the same generic letter to every job and make it at least three pages long so "
            "it looks thorough.",
        ),
        (
            "When should I use a semicolon?",
            "Use a semicolon to join two closely related independent clauses without a "
            'conjunction, as in "The bakery closed early; it had sold out of bread." You can '
            'also use semicolons to separate list items that already contain commas, as in "We '
            "visited Lyon, France; Turin, Italy; and Geneva, Switzerland.\" Don't use one where "
            'a comma and a word like "and" or "but" already joins the clauses.',
            "To join two closely related independent clauses.",
            "A semicolon is just a fancy comma, so you can use one anywhere you'd pause.",
        ),
        (
            "How can I get past writer's block?",
            "Lower the stakes and just start. Set a timer for 15 minutes and write without "
            "editing, even if the draft is rough. If the beginning is the problem, start with "
            "the section you find easiest. Outlining your main points, changing your location or "
            "talking the idea through out loud can also help. You can fix a bad draft, but you "
            "can't fix a blank page.",
            "Set a timer and write a rough draft without editing.",
            "Never write until inspiration strikes; any words you force out will have to be "
            "thrown away.",
        ),
        (
            "What's the difference between affect and effect?",
            'In most cases, "affect" is a verb meaning to influence, and "effect" is a noun '
            'meaning a result. For example: "The weather affected our plans" and "The weather '
            'had an effect on our plans." There are exceptions: "effect" can be a verb meaning '
            'to bring about, as in "effect change," and "affect" is a noun in psychology.',
            "Affect is usually a verb; effect is usually a noun.",
            "They mean exactly the same thing, so you can use either one in any sentence.",
        ),
        (
            "How do I write a strong thesis statement?",
            "A strong thesis makes a specific, arguable claim that your essay will support, "
            'usually in one or two sentences at the end of the introduction. Compare "Social '
            'media has pros and cons" with "Schools should teach social media literacy because '
            'it helps students recognize misinformation." The second takes a clear position and '
            "hints at the reasons you'll develop. Revise your thesis as your argument evolves.",
            "Make a specific, arguable claim.",
            'A thesis should be a general fact nobody could disagree with, like "Water is wet."',
        ),
        (
            "How do I make my writing more concise?",
            '1. Cut filler words like "really," "very" and "basically."\n'
            '2. Replace wordy phrases: "due to the fact that" becomes "because," and "in order '
            'to" becomes "to."\n'
            '3. Prefer the active voice: "The team fixed the bug" instead of "The bug was fixed '
            'by the team."\n'
            "4. Delete sentences that repeat a point you've already made.\n"
            "Reading your draft aloud helps you spot padding.",
            "Cut filler words and use the active voice.",
            "Add more adjectives and repeat your key points; longer sentences always sound more "
            "professional.",
        ),
        (
            "Should I avoid the passive voice?",
            "Use the active voice by default, because it's usually clearer and more direct: "
            '"The committee approved the plan." The passive voice is useful when the actor is '
            "unknown or unimportant, or when you want to focus on the action or result, as in "
            '"The samples were stored at 4°C," which is why it\'s common in scientific writing. '
            "The problem is overuse, not the passive voice itself.",
            "Mostly, but it's fine when the actor doesn't matter.",
            "The passive voice is a grammatical error and should never appear in any kind of "
            "writing.",
        ),
    ),
    "history": (
        (
            "Why did the Roman Empire fall?",
            "Historians point to several causes rather than one. The Western Roman Empire "
            "suffered political instability, with frequent civil wars and short-lived emperors, "
            "along with economic strain from heavy taxation and debased currency. It also faced "
            "pressure from migrating and invading groups such as the Goths and Vandals. The "
            "traditional end date is 476 CE, when Odoacer deposed the emperor Romulus "
            "Augustulus, while the Eastern Roman Empire survived until 1453.",
            "A mix of political, economic and military problems.",
            "The Roman Empire fell in a single day in 1066, when the Normans conquered Rome.",
        ),
        (
            "What was the Renaissance?",
            "The Renaissance was a period of cultural revival in Europe, roughly from the 14th "
            "to the 17th century, that began in Italy. It was marked by renewed interest in "
            "classical Greek and Roman learning, a focus on human potential known as humanism, "
            "and major achievements in art, science and literature. Figures such as Leonardo da "
            "Vinci and Michelangelo are associated with it, and the printing press helped spread "
            "its ideas.",
            "A European cultural revival from about the 14th to the 17th century.",
            "The Renaissance was a war between France and Spain in the 1900s.",
        ),
        (
            "What caused World War I?",
            "The immediate trigger was the assassination of Archduke Franz Ferdinand of "
            "Austria-Hungary in Sarajevo on June 28, 1914. Deeper causes included a system of "
            "alliances that pulled the major powers into the conflict, militarism and an arms "
            "race, imperial rivalries, and nationalism, especially in the Balkans. Within weeks, "
            "Austria-Hungary, Germany, Russia, France and Britain were at war.",
            "The assassination of Archduke Franz Ferdinand triggered it.",
            "World War I started when Germany invaded Poland in 1939.",
        ),
        (
            "Who built the pyramids of Giza?",
            "The pyramids of Giza were built by ancient Egyptians during the Old Kingdom, around "
            "2600 to 2500 BCE, as tombs for the pharaohs Khufu, Khafre and Menkaure. Evidence "
            "from nearby workers' villages and tombs shows they were built by organized, paid "
            "crews of laborers rather than by slaves, as is often claimed. The Great Pyramid of "
            "Khufu was the tallest human-made structure in the world for about 3,800 years.",
            "Ancient Egyptian workers, as tombs for pharaohs.",
            "The Romans built them around 100 CE as grain storehouses.",
        ),
        (
            "What was the Cold War?",
            "The Cold War was a period of geopolitical rivalry between the United States and the "
            "Soviet Union and their allies, lasting from about 1947 to 1991. The two superpowers "
            "never fought each other directly; instead they competed through an arms race, the "
            "space race and proxy wars such as those in Korea and Vietnam. It ended with the "
            "collapse of the Soviet Union in 1991.",
            "A rivalry between the US and the Soviet Union from about 1947 to 1991.",
            "The Cold War was a series of battles fought in Antarctica during the 1800s.",
        ),
        (
            "What was the Industrial Revolution?",
            "The Industrial Revolution was the shift from hand production to machine "
            "manufacturing that began in Britain in the mid-18th century and spread to Europe "
            "and North America. Key developments included improved steam engines, mechanized "
            "textile production and new ways of making iron. It drove rapid urbanization and "
            "economic growth, but also brought harsh factory conditions, including child labor.",
            "The shift to machine manufacturing that began in 18th-century Britain.",
            "The Industrial Revolution started in the 1950s with the invention of the personal "
            "computer.",
        ),
        (
            "Why was the printing press important?",
            "Johannes Gutenberg's movable-type printing press, developed around 1440 in Mainz, "
            "made books far cheaper and faster to produce. Information spread more widely and "
            "quickly, literacy rose, and the ideas of the Renaissance, the Reformation and the "
            "Scientific Revolution reached large audiences. It also helped standardize spelling "
            "and written languages.",
            "It made books cheap and spread ideas quickly.",
            "The printing press was invented in the 1900s and was used mainly to print money.",
        ),
    ),
}


def _bank_source(items: tuple[_BankItem, ...], vague: tuple[str, ...]) -> _Source:
    def source(rand: _Rand) -> _Parts:
        prompt, good, short, wrong = _pick(rand, items)
        return prompt, good, short, _pick(rand, vague), wrong

    return source


_LANGUAGES = ("Python", "JavaScript", "Java", "Go", "Rust")

# task, wrong answer (with {language}), then (too short, good) per language in _LANGUAGES order
_CODE_TASKS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    (
        "reverse a string",
        "Strings in {language} have a built-in `reverse()` method, so `text.reverse()` reverses "
        "the string in place.",
        (
            (
                "Use `text[::-1]`.",
                "Use slicing with a step of -1: `reversed_text = text[::-1]`. Strings are "
                "immutable, so this returns a new string and leaves the original unchanged. If "
                'you find it more readable, `"".join(reversed(text))` gives the same result.',
            ),
            (
                'Use `[...text].reverse().join("")`.',
                "Strings don't have a reverse method, so turn the string into an array, reverse "
                'it and join it back: `const reversed = [...text].reverse().join("");`. '
                "Spreading with `[...text]` splits by code point, so emoji and other characters "
                'outside the Basic Multilingual Plane survive, unlike `text.split("")`.',
            ),
            (
                "Use `new StringBuilder(text).reverse().toString()`.",
                "Use `StringBuilder`, which has a built-in reverse method: `String reversed = "
                "new StringBuilder(text).reverse().toString();`. `String` itself is immutable "
                "and has no reverse method. `StringBuilder.reverse()` also keeps surrogate pairs "
                "together, so characters like emoji stay intact.",
            ),
            (
                "Convert it to a `[]rune`, swap from both ends and convert it back.",
                "Go has no built-in string reverse, so convert the string to a slice of runes "
                "and swap from both ends:\n"
                "```go\n"
                "func reverse(s string) string {\n"
                "    r := []rune(s)\n"
                "    for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {\n"
                "        r[i], r[j] = r[j], r[i]\n"
                "    }\n"
                "    return string(r)\n"
                "}\n"
                "```\n"
                "Working with runes instead of bytes keeps multi-byte UTF-8 characters intact.",
            ),
            (
                "Use `text.chars().rev().collect::<String>()`.",
                "Iterate over the characters in reverse and collect them into a new `String`: "
                "`let reversed: String = text.chars().rev().collect();`. This works on Unicode "
                "scalar values, so accented letters stay intact, although characters built from "
                "several code points, like some emoji, can still be split.",
            ),
        ),
    ),
    (
        "read a file line by line",
        "{language} can't read a file line by line. You have to load the whole file into memory "
        "and split it yourself.",
        (
            (
                "Loop over the file object: `for line in f:`.",
                "Open the file in a `with` block and iterate over it:\n"
                "```python\n"
                'with open("data.txt", encoding="utf-8") as f:\n'
                "    for line in f:\n"
                '        print(line.rstrip("\\n'
                '"))\n'
                "```\n"
                "Iterating over the file object reads one line at a time, so it works even for "
                "very large files, and the `with` block closes the file for you.",
            ),
            (
                "Use `readline.createInterface` with `fs.createReadStream` and `for await`.",
                "In Node.js, use the `readline` module with a file stream:\n"
                "```js\n"
                'const fs = require("node:fs");\n'
                'const readline = require("node:readline");\n'
                "\n"
                "async function main() {\n"
                "  const rl = readline.createInterface({\n"
                '    input: fs.createReadStream("data.txt"),\n'
                "    crlfDelay: Infinity,\n"
                "  });\n"
                "  for await (const line of rl) {\n"
                "    console.log(line);\n"
                "  }\n"
                "}\n"
                "\n"
                "main();\n"
                "```\n"
                "This streams the file instead of loading it all into memory at once.",
            ),
            (
                "Call `reader.readLine()` in a loop until it returns `null`.",
                "Use `Files.newBufferedReader` in a try-with-resources block:\n"
                "```java\n"
                'try (BufferedReader reader = Files.newBufferedReader(Path.of("data.txt"))) {\n'
                "    String line;\n"
                "    while ((line = reader.readLine()) != null) {\n"
                "        System.out.println(line);\n"
                "    }\n"
                "}\n"
                "```\n"
                "The reader is closed automatically, `readLine()` returns `null` at the end of "
                "the file, and the enclosing method must handle or declare `IOException`.",
            ),
            (
                "Use `bufio.NewScanner` and loop with `scanner.Scan()`.",
                "Use a `bufio.Scanner`:\n"
                "```go\n"
                'f, err := os.Open("data.txt")\n'
                "if err != nil {\n"
                "    log.Fatal(err)\n"
                "}\n"
                "defer f.Close()\n"
                "\n"
                "scanner := bufio.NewScanner(f)\n"
                "for scanner.Scan() {\n"
                "    fmt.Println(scanner.Text())\n"
                "}\n"
                "if err := scanner.Err(); err != nil {\n"
                "    log.Fatal(err)\n"
                "}\n"
                "```\n"
                "By default a single line can be at most 64 KB; call `scanner.Buffer` to allow "
                "longer lines.",
            ),
            (
                "Use `BufReader::new(file).lines()`.",
                "Wrap the file in a `BufReader` and call `lines()`:\n"
                "```rust\n"
                "use std::fs::File;\n"
                "use std::io::{self, BufRead, BufReader};\n"
                "\n"
                "fn main() -> io::Result<()> {\n"
                '    let reader = BufReader::new(File::open("data.txt")?);\n'
                "    for line in reader.lines() {\n"
                '        println!("{}", line?);\n'
                "    }\n"
                "    Ok(())\n"
                "}\n"
                "```\n"
                "Each item is an `io::Result<String>`, so the `?` operator passes read errors up "
                "to the caller.",
            ),
        ),
    ),
    (
        "sort a list of numbers",
        "Just call sort with no arguments; in {language} it always sorts numbers from largest to "
        "smallest.",
        (
            (
                "Call `sorted(numbers)`.",
                "Use `sorted(numbers)` to get a new sorted list, or `numbers.sort()` to sort the "
                "existing list in place. Both sort in ascending order by default; pass "
                "`reverse=True` for descending order. Note that `numbers.sort()` returns `None`, "
                "so don't assign its result.",
            ),
            (
                "Use `numbers.sort((a, b) => a - b)`.",
                "Pass a compare function: `numbers.sort((a, b) => a - b);`. Without one, "
                "`sort()` compares the values as strings, so `[10, 9, 1]` would become `[1, 10, "
                "9]`. `sort()` changes the array in place; in modern runtimes, "
                "`numbers.toSorted((a, b) => a - b)` returns a sorted copy instead.",
            ),
            (
                "Call `Collections.sort(numbers)`.",
                "For a `List<Integer>`, call `Collections.sort(numbers);` to sort it in "
                "ascending order in place. For a primitive array such as `int[]`, use "
                "`Arrays.sort(numbers);`. For descending order on a list, use "
                "`numbers.sort(Comparator.reverseOrder());`.",
            ),
            (
                "Call `slices.Sort(numbers)`.",
                "Since Go 1.21, use the standard `slices` package: `slices.Sort(numbers)` sorts "
                "the slice in place in ascending order. In older versions, use "
                "`sort.Ints(numbers)` for a `[]int` or `sort.Float64s(numbers)` for a "
                "`[]float64`.",
            ),
            (
                "Call `numbers.sort()` on a mutable `Vec`.",
                "For integers, call `numbers.sort();` on a mutable `Vec`, which sorts it in "
                "place in ascending order; `sort_unstable()` is a bit faster if you don't need a "
                "stable sort. Floats don't implement `Ord` because of NaN, so for `f64` values "
                "use `numbers.sort_by(|a, b| a.total_cmp(b));`.",
            ),
        ),
    ),
    (
        "check if a dictionary contains a key",
        "You can't check for a key in {language}. Just access it and let the program crash if "
        "it's missing.",
        (
            (
                "Use `if key in my_dict:`.",
                'Use the `in` operator: `if "email" in user:` is true when the key exists. If '
                'you also want the value, `user.get("email")` returns `None`, or a default you '
                "pass as the second argument, instead of raising a `KeyError`.",
            ),
            (
                "Use `Object.hasOwn(obj, key)`, or `map.has(key)` for a `Map`.",
                'For a plain object, use `Object.hasOwn(user, "email")`, which checks only the '
                "object's own properties; the `in` operator also finds inherited ones. If "
                'you\'re using a `Map`, call `map.has("email")`. Avoid checking `user.email !== '
                "undefined`, because a key can exist with the value `undefined`.",
            ),
            (
                "Call `map.containsKey(key)`.",
                'Java\'s dictionary type is `Map`, so call `map.containsKey("email")`. If you '
                "need the value too, `map.get(key)` returns `null` for a missing key, but that's "
                "ambiguous when the map allows `null` values, so `containsKey` or `getOrDefault` "
                "is clearer.",
            ),
            (
                "Use `_, ok := m[key]`.",
                'Use the two-value form of a map lookup: `value, ok := m["email"]`. `ok` is '
                "`true` if the key exists and `false` otherwise, in which case `value` is the "
                "zero value for its type. If you only need the check, write `_, ok := "
                'm["email"]`.',
            ),
            (
                "Call `map.contains_key(&key)`.",
                'For a `HashMap` or `BTreeMap`, call `map.contains_key("email")`, which returns '
                'a `bool`. If you also need the value, use `map.get("email")`, which returns an '
                "`Option` you can match on, for example with `if let Some(value) = "
                'map.get("email")`.',
            ),
        ),
    ),
    (
        "convert a string to an integer",
        "{language} can't convert text to numbers. You have to write your own parser that reads "
        "each character.",
        (
            (
                "Use `int(text)`.",
                'Use `int()`: `count = int("42")`. It raises a `ValueError` if the text isn\'t a '
                "valid integer, so wrap it in `try`/`except ValueError` when handling user "
                "input. It ignores surrounding whitespace, and you can pass a base, as in "
                '`int("ff", 16)`.',
            ),
            (
                "Use `Number.parseInt(text, 10)`.",
                "Use `Number.parseInt(text, 10)` or `Number(text)`. `parseInt` reads leading "
                'digits and stops at the first invalid character, so `parseInt("42px", 10)` is '
                '`42`, while `Number("42px")` is `NaN`. Check the result with `Number.isNaN()` '
                "before using it.",
            ),
            (
                "Use `Integer.parseInt(text)`.",
                'Use `Integer.parseInt("42")`, which returns an `int`. It throws a '
                "`NumberFormatException` if the string isn't a valid integer, so catch that "
                "when parsing user input. For numbers too large for an `int`, use "
                "`Long.parseLong`.",
            ),
            (
                "Use `strconv.Atoi(text)`.",
                "Use `strconv.Atoi`, which returns the number and an error:\n"
                "```go\n"
                'n, err := strconv.Atoi("42")\n'
                "if err != nil {\n"
                "    return err\n"
                "}\n"
                "```\n"
                "For other bases or sizes, use `strconv.ParseInt(s, base, bitSize)`.",
            ),
            (
                "Use `text.parse::<i32>()`.",
                "Use `parse` with the target type, for example `let n: i32 = "
                "text.trim().parse()?;` or `text.parse::<i32>()`. It returns a `Result`, so "
                "handle the error with `match`, `?` or `unwrap_or` rather than calling "
                "`unwrap()` on user input.",
            ),
        ),
    ),
    (
        "remove duplicates from a list",
        "{language} removes duplicates from lists automatically, so you don't need to do anything.",
        (
            (
                "Use `list(dict.fromkeys(items))`.",
                "To keep the original order, use `unique = list(dict.fromkeys(items))`, since "
                "dictionaries preserve insertion order. If order doesn't matter, "
                "`list(set(items))` is shorter. Both require the items to be hashable.",
            ),
            (
                "Use `[...new Set(items)]`.",
                "Use a `Set`, which only stores unique values: `const unique = [...new "
                "Set(items)];`. It keeps the order in which values first appear. Objects are "
                "compared by reference, so two separate objects with the same contents are both "
                "kept.",
            ),
            (
                "Use `items.stream().distinct().toList()`.",
                "Pass the list through a `LinkedHashSet`, which drops duplicates and keeps "
                "insertion order: `List<String> unique = new ArrayList<>(new "
                "LinkedHashSet<>(items));`. With streams, `items.stream().distinct().toList()` "
                "does the same. Both rely on the elements' `equals` and `hashCode` methods.",
            ),
            (
                "Loop over the items and keep a map of the values you've seen.",
                "Use a map to track the values you've already seen:\n"
                "```go\n"
                "seen := make(map[string]bool)\n"
                "unique := []string{}\n"
                "for _, item := range items {\n"
                "    if !seen[item] {\n"
                "        seen[item] = true\n"
                "        unique = append(unique, item)\n"
                "    }\n"
                "}\n"
                "```\n"
                "This keeps the original order. If order doesn't matter, you can sort the slice "
                "and call `slices.Compact` instead.",
            ),
            (
                "Call `items.sort()` and then `items.dedup()`.",
                "If order doesn't matter, sort and deduplicate in place with `items.sort(); "
                "items.dedup();`. `dedup` only removes consecutive duplicates, which is why you "
                "sort first. To keep the original order, track seen values: `let mut seen = "
                "HashSet::new(); items.retain(|x| seen.insert(x.clone()));`.",
            ),
        ),
    ),
    (
        "join a list of strings with commas",
        'Use the `+` operator between the list and the separator, like `words + ", "`, and '
        "{language} inserts the commas for you.",
        (
            (
                'Use `", ".join(words)`.',
                'Call `join` on the separator: `", ".join(words)`. Every item must be a string, '
                'so convert other types first, for example with `", ".join(map(str, numbers))`.',
            ),
            (
                'Use `words.join(", ")`.',
                'Use the array\'s `join` method: `words.join(", ")`. Without an argument, '
                "`join()` uses a comma with no space. Other values are converted to strings, and "
                "`null` or `undefined` become empty strings.",
            ),
            (
                'Use `String.join(", ", words)`.',
                'Use `String.join(", ", words)`, which works with arrays and any `Iterable` of '
                "strings. If you're starting from a stream, collect it with "
                '`Collectors.joining(", ")`.',
            ),
            (
                'Use `strings.Join(words, ", ")`.',
                'Use `strings.Join` from the standard library: `result := strings.Join(words, ", '
                '")`. It takes a `[]string`, so convert other types first, for example with '
                "`strconv.Itoa` for integers.",
            ),
            (
                'Call `join(", ")` on the slice.',
                'Call `join` on a slice or `Vec` of strings: `let result = words.join(", ");`. '
                "It works for both `Vec<String>` and `Vec<&str>`. For numbers, convert them "
                "first, for example `nums.iter().map(|n| "
                'n.to_string()).collect::<Vec<_>>().join(", ")`.',
            ),
        ),
    ),
)

_CODE_PROMPTS = (
    "How do I {task} in {language}?",
    "What's the best way to {task} in {language}?",
    "In {language}, how can I {task}?",
    "Can you show me how to {task} using {language}?",
    "I'm learning {language}. How would I {task}?",
)
_CODE_VAGUE = (
    "There are a few ways to {task} in {language}, and the best one depends on your code. Check "
    "the documentation.",
    "It depends on what you're building. {language} can do it, but you'll have to experiment.",
)


def _code_entries() -> tuple[tuple[tuple[str, ...], str, str, tuple[str, ...], str], ...]:
    entries = []
    for task, wrong, cells in _CODE_TASKS:
        for language, (short, good) in zip(_LANGUAGES, cells, strict=True):
            prompts = tuple(p.format(task=task, language=language) for p in _CODE_PROMPTS)
            vague = tuple(v.format(task=task, language=language) for v in _CODE_VAGUE)
            entries.append((prompts, good, short, vague, wrong.format(language=language)))
    return tuple(entries)


_CODE_ENTRIES = _code_entries()


def _coding_howto(rand: _Rand) -> _Parts:
    prompts, good, short, vague, wrong = _pick(rand, _CODE_ENTRIES)
    return _pick(rand, prompts), good, short, _pick(rand, vague), wrong


# code, reason phrase, meaning, practical note
_HTTP_CODES: tuple[tuple[int, str, str, str], ...] = (
    (
        200,
        "OK",
        "the request succeeded and the response contains the result",
        "It's the standard response to a successful GET request.",
    ),
    (
        201,
        "Created",
        "the request succeeded and a new resource was created",
        "APIs usually return it after a successful POST, often with a `Location` header pointing "
        "to the new resource.",
    ),
    (
        204,
        "No Content",
        "the request succeeded but there is no response body",
        "It's common for successful DELETE requests or updates that don't need to return any data.",
    ),
    (
        301,
        "Moved Permanently",
        "the resource has a new permanent URL, given in the `Location` header",
        "Browsers and search engines switch to the new address, so use it for permanent moves "
        "such as a change of domain.",
    ),
    (
        302,
        "Found",
        "the resource is temporarily at a different URL, given in the `Location` header",
        "Unlike a 301, clients should keep using the original URL for future requests.",
    ),
    (
        304,
        "Not Modified",
        "the cached copy the client already has is still valid",
        "Servers send it in response to conditional requests with headers like `If-None-Match`, "
        "which saves bandwidth.",
    ),
    (
        400,
        "Bad Request",
        "the server couldn't process the request because it was malformed",
        "Check the request body, query parameters and headers, for example for invalid JSON or a "
        "missing required field.",
    ),
    (
        401,
        "Unauthorized",
        "the request lacks valid authentication credentials",
        "Despite the name, it's about authentication: log in or send a valid token, then try "
        "again.",
    ),
    (
        403,
        "Forbidden",
        "the server knows who you are but refuses to allow the request",
        "Logging in again won't help; the account needs the right permissions.",
    ),
    (
        404,
        "Not Found",
        "the server can't find the requested resource",
        "Check the URL for typos and make sure the resource hasn't been moved or deleted.",
    ),
    (
        405,
        "Method Not Allowed",
        "the HTTP method isn't supported for that URL, such as a POST to a read-only endpoint",
        "The response should include an `Allow` header listing the methods that are supported.",
    ),
    (
        409,
        "Conflict",
        "the request conflicts with the current state of the resource",
        "A typical example is creating a record that already exists or updating one that someone "
        "else changed first.",
    ),
    (
        429,
        "Too Many Requests",
        "you've sent too many requests in a given time and hit a rate limit",
        "Slow down and retry later; if the response has a `Retry-After` header, it tells you how "
        "long to wait.",
    ),
    (
        500,
        "Internal Server Error",
        "the server hit an unexpected problem while handling the request",
        "It points to a bug or failure on the server, so check the server logs rather than the "
        "request.",
    ),
    (
        502,
        "Bad Gateway",
        "a server acting as a gateway or proxy got an invalid response from the upstream server",
        "It often means the application behind a proxy such as Nginx has crashed or isn't running.",
    ),
    (
        503,
        "Service Unavailable",
        "the server is temporarily unable to handle the request, usually because it's overloaded "
        "or down for maintenance",
        "It's usually temporary, so retry after a delay, respecting any `Retry-After` header.",
    ),
    (
        504,
        "Gateway Timeout",
        "a gateway or proxy didn't get a response from the upstream server in time",
        "Look for slow operations in the backend, or raise the proxy's timeout if the work "
        "legitimately takes longer.",
    ),
)
_HTTP_CLASSES = {
    2: "indicate success",
    3: "indicate a redirection",
    4: "indicate a problem with the request on the client side",
    5: "indicate an error on the server side",
}
_HTTP_PROMPTS = (
    "What does the HTTP status code {code} mean?",
    "I got a {code} response from a server. What does it mean?",
    "What is HTTP {code}?",
    "What does a {code} status code tell me?",
)
_HTTP_VAGUE = "It's an HTTP status code. The server is telling you something about your request."


def _http_entries() -> tuple[tuple[int, tuple[str, ...], str, str, str], ...]:
    entries = []
    for code, name, meaning, note in _HTTP_CODES:
        prompts = tuple(p.format(code=code) for p in _HTTP_PROMPTS)
        good = (
            f"{code} {name} means {meaning}. {note} "
            f"Status codes in the {code // 100}xx range {_HTTP_CLASSES[code // 100]}."
        )
        entries.append((code, prompts, good, f'{code} means "{name}."', meaning))
    return tuple(entries)


_HTTP_ENTRIES = _http_entries()


def _coding_http(rand: _Rand) -> _Parts:
    count = len(_HTTP_ENTRIES)
    index = int(rand() * count)
    code, prompts, good, short, _ = _HTTP_ENTRIES[index]
    # Another code's meaning presented as this one's: plausible-sounding but always wrong.
    other = _HTTP_ENTRIES[(index + 1 + int(rand() * (count - 1))) % count][4]
    return _pick(rand, prompts), good, short, _HTTP_VAGUE, f"{code} means {other}."


# task, good, too short
_GIT_TASKS: tuple[tuple[str, str, str], ...] = (
    (
        "undo my last commit but keep the changes",
        "Run `git reset --soft HEAD~1`. This moves your branch back one commit and leaves that "
        "commit's changes staged, so you can edit them and commit again. If you've already "
        "pushed the commit, use `git revert HEAD` instead, which adds a new commit that undoes "
        "it without rewriting shared history.",
        "Run `git reset --soft HEAD~1`.",
    ),
    (
        "create a new branch and switch to it",
        "Run `git switch -c feature-name`, or the older equivalent `git checkout -b "
        "feature-name`. The new branch starts from your current commit. When you're ready to "
        "share it, push it with `git push -u origin feature-name` to set its upstream.",
        "Run `git switch -c branch-name`.",
    ),
    (
        "see what I've changed before committing",
        "Run `git status` to see which files changed, then `git diff` to see unstaged changes "
        "line by line. Use `git diff --staged` to review what's already staged for the next "
        "commit. Checking both before you commit helps you catch debugging code or files you "
        "didn't mean to include.",
        "Use `git diff`.",
    ),
    (
        "discard my local changes to a file",
        "Run `git restore path/to/file` to throw away uncommitted changes in that file and "
        "return it to the last committed version. If the changes are also staged, run `git "
        "restore --staged path/to/file` first. Be careful: discarded changes can't be recovered.",
        "Run `git restore <file>`.",
    ),
    (
        "rename a branch",
        "To rename the branch you're on, run `git branch -m new-name`; to rename a different "
        "branch, use `git branch -m old-name new-name`. If the branch was already pushed, push "
        "the new name with `git push -u origin new-name` and delete the old one with `git push "
        "origin --delete old-name`.",
        "Use `git branch -m new-name`.",
    ),
    (
        "save my work temporarily without committing",
        "Use `git stash` to save your uncommitted changes and return to a clean working tree. "
        "Later, run `git stash pop` to reapply them and remove the stash, or `git stash list` to "
        "see everything you've saved. Add `-u` to include untracked files.",
        "Use `git stash`, then `git stash pop`.",
    ),
    (
        "change the message of my last commit",
        'Run `git commit --amend -m "New message"`, or just `git commit --amend` to edit the '
        "message in your editor. This replaces the last commit with a new one, so if you've "
        "already pushed it you'll need `git push --force-with-lease`, which is only safe on a "
        "branch nobody else is using.",
        "Run `git commit --amend`.",
    ),
    (
        "delete a local branch",
        "Switch to a different branch first, then run `git branch -d branch-name`. Git refuses "
        "if the branch has unmerged work; use `git branch -D branch-name` only if you're sure "
        "you want to throw that work away. To delete the remote branch too, run `git push origin "
        "--delete branch-name`.",
        "Run `git branch -d branch-name`.",
    ),
    (
        "see the commit history as a compact graph",
        "Run `git log --oneline --graph --all`. `--oneline` shows each commit on one line, "
        "`--graph` draws the branch structure and `--all` includes every branch, not just the "
        "current one. Recent versions of Git show branch and tag names automatically; on older "
        "ones, add `--decorate`.",
        "Run `git log --oneline --graph`.",
    ),
)
_GIT_PROMPTS = (
    "How do I {task} with Git?",
    "What's the Git command to {task}?",
    "In Git, how can I {task}?",
)
_GIT_VAGUE = "Git has a command for that, but it depends on your setup. Look through the Git docs."
_GIT_WRONG = (
    "Delete the `.git` folder and run `git init` again; Git has no proper command for that.",
    "Git can't do that. Copy your files somewhere else, delete the repository and clone it again.",
)
_GIT_ENTRIES = tuple(
    (tuple(p.format(task=task) for p in _GIT_PROMPTS), good, short)
    for task, good, short in _GIT_TASKS
)


def _coding_git(rand: _Rand) -> _Parts:
    prompts, good, short = _pick(rand, _GIT_ENTRIES)
    return _pick(rand, prompts), good, short, _GIT_VAGUE, _pick(rand, _GIT_WRONG)


# concept, explanation for a child, explanation for an older audience, too short, wrong
_CONCEPTS: tuple[tuple[str, str, str, str, str], ...] = (
    (
        "photosynthesis",
        "Plants make their own food using sunlight. Their leaves take in carbon dioxide from the "
        "air, their roots take in water, and the energy from sunlight turns these into sugar "
        "that the plant uses to grow. Along the way, plants give off oxygen, which is the gas we "
        "need to breathe.",
        "Photosynthesis is how plants, algae and some bacteria turn light energy into chemical "
        "energy. In the chloroplasts, chlorophyll absorbs light, which powers reactions that "
        "combine carbon dioxide and water into glucose and release oxygen. The overall equation "
        "is 6CO2 + 6H2O + light → C6H12O6 + 6O2. It supplies most of the oxygen in the "
        "atmosphere and the energy at the base of most food chains.",
        "Plants use sunlight to turn carbon dioxide and water into sugar and oxygen.",
        "Plants get all of their food from the soil through their roots; sunlight just keeps "
        "them warm.",
    ),
    (
        "gravity",
        "Gravity is an invisible pull that every object has on every other object. Bigger things "
        "pull harder, and Earth is so big that it pulls everything toward its center, which is "
        "why a ball falls back down when you throw it. Gravity also keeps the Moon going around "
        "Earth and Earth going around the Sun.",
        "Gravity is the attraction between objects with mass. In Newton's description, the force "
        "is proportional to the product of the two masses and falls off with the square of the "
        "distance between them. Near Earth's surface it accelerates falling objects at about 9.8 "
        "m/s², whatever their mass, if air resistance is ignored. Einstein's general relativity "
        "describes it more precisely as the curvature of spacetime by mass and energy.",
        "It's the attraction between objects that have mass.",
        "Heavier objects always fall faster than light ones, even in a vacuum, because gravity "
        "pulls harder on them.",
    ),
    (
        "evolution by natural selection",
        "The animals in a group are all a little different from each other. Some differences, "
        "like better camouflage, help an animal survive and have babies, and the babies inherit "
        "that helpful trait. Over many, many generations these small changes add up, and a "
        "species can change a lot.",
        "Natural selection acts on variation within a population. Individuals with heritable "
        "traits that improve survival and reproduction in their environment tend to leave more "
        "offspring, so those traits become more common over generations. Together with mutation, "
        "genetic drift and gene flow, this drives evolution, the change in a population's "
        "genetic makeup over time, and over long periods it can produce new species.",
        "Traits that help organisms survive and reproduce become more common over generations.",
        "Animals evolve during their own lifetimes by trying hard; a giraffe stretches its neck, "
        "so its babies are born with longer necks.",
    ),
    (
        "the water cycle",
        "Water on Earth keeps moving around in a big loop. The Sun warms oceans and lakes, and "
        "some of the water turns into an invisible gas called water vapor that rises into the "
        "sky. High up, it cools and forms tiny droplets that make clouds, and when the droplets "
        "get heavy they fall as rain or snow and flow back to rivers and the sea.",
        "The water cycle describes how water moves between the oceans, the atmosphere and the "
        "land. Solar energy drives evaporation from oceans and lakes and transpiration from "
        "plants. As moist air rises and cools, the vapor condenses into cloud droplets or ice "
        "crystals, which fall as precipitation. The water then runs off into rivers, soaks into "
        "groundwater or is stored as ice, and eventually returns to the oceans.",
        "Water evaporates, condenses into clouds and falls back as rain or snow.",
        "Clouds are made of smoke, and rain is water that leaks down from space.",
    ),
    (
        "DNA",
        "DNA is like an instruction book inside almost every cell of your body. It's written in "
        "a code with just four letters, and those instructions tell your body how to grow and "
        "work. You got half of your DNA from each parent, which is why you might have your mom's "
        "eyes or your dad's smile.",
        "DNA, or deoxyribonucleic acid, is the molecule that stores genetic information. It's a "
        "double helix of two strands whose bases pair up, A with T and C with G. Segments called "
        "genes are transcribed into RNA, which is translated into the proteins that do most of "
        "the work in cells. Because each strand can serve as a template, DNA can be copied "
        "accurately when cells divide.",
        "It's the molecule that stores genetic instructions.",
        "DNA is only found in your blood, and it's a type of fat that your body burns for energy.",
    ),
    (
        "atoms",
        "Everything around you is made of tiny building blocks called atoms, which are far too "
        "small to see. Each atom has a center called the nucleus, made of protons and neutrons, "
        "with even tinier electrons zooming around it. Different kinds of atoms, like oxygen and "
        "carbon, join together to make everything from water to your own body.",
        "An atom consists of a dense nucleus of protons and neutrons surrounded by electrons. "
        "The number of protons, the atomic number, determines the element, and the number of "
        "neutrons determines the isotope. Electrons occupy orbitals at different energy levels, "
        "and the outermost ones govern how atoms bond into molecules. Almost all of an atom's "
        "mass is in the nucleus, yet the atom is mostly empty space.",
        "Tiny building blocks of matter: a nucleus surrounded by electrons.",
        "Atoms are solid little balls with nothing inside them, and you can see them with a "
        "magnifying glass.",
    ),
    (
        "plate tectonics",
        "The outside of the Earth is broken into giant pieces called plates, a bit like a "
        "cracked eggshell. The plates sit on hot rock that flows very slowly, and they move "
        "about as fast as your fingernails grow. Where plates push together or pull apart, you "
        "get earthquakes, volcanoes and mountains.",
        "Plate tectonics is the theory that Earth's rigid outer layer, the lithosphere, is "
        "divided into plates that move over the hotter, slowly flowing asthenosphere, typically "
        "a few centimeters a year. At divergent boundaries plates move apart and new crust "
        "forms; at convergent boundaries one plate can sink beneath another, building mountains "
        "and volcanoes; and at transform boundaries they slide past each other. It explains "
        "where earthquakes, volcanoes and mountain ranges occur.",
        "Earth's outer shell is split into plates that move slowly.",
        "The continents have never moved; they've been in exactly the same place since Earth "
        "formed.",
    ),
    (
        "tides",
        "The Moon's gravity gently pulls on Earth's oceans, making the water bulge out on the "
        "side facing the Moon, and there's a second bulge on the opposite side. As Earth spins, "
        "a beach passes through these bulges, so the sea comes in and goes out, usually twice a "
        "day.",
        "Tides are caused mainly by differences in the Moon's gravitational pull across Earth. "
        "The side nearest the Moon is pulled more strongly than Earth's center and the far side "
        "less strongly, which creates two tidal bulges. As Earth rotates through them, most "
        "coasts get two high and two low tides about every 24 hours and 50 minutes. When the Sun "
        "and Moon line up, we get stronger spring tides, and when they're at right angles, "
        "weaker neap tides.",
        "Mostly the Moon's gravity pulling on the oceans.",
        "Tides are caused by the wind pushing the ocean toward the shore every morning and "
        "evening.",
    ),
    (
        "black holes",
        "A black hole is a place in space where gravity is so strong that nothing can escape, "
        "not even light, which is why it looks black. Many form when a very big star runs out of "
        "fuel and collapses. From far away, though, a black hole pulls on things just like any "
        "other object with the same mass.",
        "A black hole is a region where mass is packed so densely that the escape velocity "
        "exceeds the speed of light. Its boundary, the event horizon, is the point of no return. "
        "Stellar-mass black holes form when massive stars collapse at the end of their lives, "
        "while supermassive ones, millions to billions of times the Sun's mass, sit at the "
        "centers of most large galaxies. In 2019, the Event Horizon Telescope released the first "
        "image of one, in the galaxy M87.",
        "A region where gravity is so strong that not even light can escape.",
        "Black holes are cosmic vacuum cleaners that will eventually suck in everything in the "
        "universe, however far away it is.",
    ),
    (
        "electricity",
        "Electricity is the flow of tiny particles called electrons. A battery works like a pump "
        "that pushes electrons around a loop of wire called a circuit. When the loop is "
        "complete, the electrons flow and can light a bulb, and when you break the loop the flow "
        "stops, which is exactly what a light switch does.",
        "Electric current is a flow of charge, carried by electrons in metal wires. A voltage "
        "from a battery or generator drives current around a closed circuit, and resistance "
        "limits it according to Ohm's law, V = IR. The power delivered is P = VI, measured in "
        "watts. Household supplies use alternating current, which reverses direction 50 or 60 "
        "times a second depending on the country.",
        "It's the flow of electric charge around a circuit.",
        "Electricity doesn't need a complete loop; one wire from a battery to a bulb is enough "
        "to light it.",
    ),
    (
        "sound",
        "Sound is made when something vibrates, like a guitar string or your vocal cords. The "
        "vibrations push the air back and forth, making invisible waves that travel to your "
        "ears. Your eardrums wiggle along with the waves, and your brain turns that into the "
        "sounds you hear.",
        "Sound is a mechanical wave: a vibrating source creates alternating compressions and "
        "rarefactions in a medium such as air, water or a solid. In dry air at 20°C it travels "
        "at about 343 meters per second, and faster in water and steel. The wave's frequency "
        "determines the pitch and its amplitude the loudness. Because it needs a medium, sound "
        "can't travel through the vacuum of space.",
        "Vibrations that travel as waves through air and other materials.",
        "Sound travels fastest through empty space, because there's no air to slow it down.",
    ),
    (
        "the difference between weather and climate",
        "Weather is what's happening outside right now, like rain today or sunshine tomorrow. "
        "Climate is what the weather is usually like in a place over many years. So a snowy day "
        "in July would be surprising weather, while the climate tells you what to expect most of "
        "the time.",
        "Weather describes short-term atmospheric conditions, such as temperature, precipitation "
        "and wind over hours or days. Climate is the long-term pattern of weather in a region, "
        "usually averaged over 30 years or more. That's why a single cold winter doesn't "
        "contradict global warming: climate change refers to shifts in long-term averages and in "
        "how often extremes occur.",
        "Weather is short-term; climate is the long-term average.",
        "Weather and climate are the same thing, so one cold day proves the climate isn't "
        "changing.",
    ),
)
_YOUNG_AUDIENCES = (
    "a 10-year-old",
    "a child",
    "a curious 8-year-old",
    "a kid in elementary school",
)
_OLDER_AUDIENCES = (
    "a high school student",
    "an adult with no science background",
    "a first-year college student",
    "a busy professional",
)
_CONCEPT_PROMPTS = (
    "Explain {concept} to {audience}.",
    "Can you explain {concept} in a way that {audience} would understand?",
    "How would you describe {concept} to {audience}?",
)
_YOUNG_OPENERS = ("", "Here's a simple way to think about it. ", "Sure! ")
_OLDER_OPENERS = ("", "Here's a clear overview. ")


def _concept_entries() -> tuple[tuple[tuple[str, ...], tuple[str, ...], str, str, str], ...]:
    entries = []
    for concept, simple, detailed, short, wrong in _CONCEPTS:
        vague = f"It's hard to explain {concept} simply; it's a complicated topic."
        for audiences, text, openers in (
            (_YOUNG_AUDIENCES, simple, _YOUNG_OPENERS),
            (_OLDER_AUDIENCES, detailed, _OLDER_OPENERS),
        ):
            prompts = tuple(
                p.format(concept=concept, audience=a) for p in _CONCEPT_PROMPTS for a in audiences
            )
            goods = tuple(o + text for o in openers)
            entries.append((prompts, goods, short, vague, wrong))
    return tuple(entries)


_CONCEPT_ENTRIES = _concept_entries()


def _science_concept(rand: _Rand) -> _Parts:
    prompts, goods, short, vague, wrong = _pick(rand, _CONCEPT_ENTRIES)
    return _pick(rand, prompts), _pick(rand, goods), short, vague, wrong


# from unit, to unit, factor, quick tip
_CONVERSIONS: tuple[tuple[str, str, float, str], ...] = (
    ("kilometers", "miles", 0.621371, "For a quick mental estimate, multiply by 0.6."),
    (
        "miles",
        "kilometers",
        1.609344,
        "One mile is exactly 1.609344 kilometers, so multiplying by 1.6 is a handy estimate.",
    ),
    ("kilograms", "pounds", 2.204623, "For a rough estimate, double the number and add 10%."),
    ("pounds", "kilograms", 0.453592, "For a rough estimate, halve the number and subtract 10%."),
    ("meters", "feet", 3.28084, "A meter is a little more than 3 feet."),
    ("feet", "meters", 0.3048, "One foot is defined as exactly 0.3048 meters."),
    ("inches", "centimeters", 2.54, "One inch is defined as exactly 2.54 centimeters."),
    (
        "centimeters",
        "inches",
        0.393701,
        "Since an inch is exactly 2.54 centimeters, you can also divide by 2.54.",
    ),
    (
        "liters",
        "US gallons",
        0.264172,
        "One US gallon is about 3.785 liters, so you can also divide by 3.785.",
    ),
    (
        "US gallons",
        "liters",
        3.785412,
        "A US gallon is smaller than an imperial gallon, which is about 4.546 liters.",
    ),
    (
        "ounces",
        "grams",
        28.349523,
        "This is for weight ounces, not fluid ounces, which measure volume.",
    ),
)
_CONVERSION_PROMPTS = (
    "How many {to} is {x} {frm}?",
    "Convert {x} {frm} to {to}.",
    "What is {x} {frm} in {to}?",
)
_CONVERSION_VAGUE = "You'd need a conversion formula for that. There are calculators online."
_TEMPERATURE_PROMPTS_C = (
    "What is {x}°C in Fahrenheit?",
    "Convert {x}°C to Fahrenheit.",
    "I saw a temperature of {x}°C. What is that in Fahrenheit?",
)
_TEMPERATURE_PROMPTS_F = (
    "What is {x}°F in Celsius?",
    "Convert {x}°F to Celsius.",
    "I saw a temperature of {x}°F. What is that in Celsius?",
)


def _science_units(rand: _Rand) -> _Parts:
    if rand() < 0.25:
        return _temperature(rand)
    frm, to, factor, tip = _pick(rand, _CONVERSIONS)
    x = 2 + int(rand() * 499)
    result = f"{x * factor:,.2f}"
    prompt = _pick(rand, _CONVERSION_PROMPTS).format(x=x, frm=frm, to=to)
    good = (
        f"To convert {frm} to {to}, multiply by {factor}. So {x} {frm} × {factor} ≈ "
        f"{result} {to}. {tip}"
    )
    # Dividing instead of multiplying is the classic conversion slip.
    wrong = f"{x} {frm} is {x / factor:,.2f} {to}; you just divide by {factor}."
    return prompt, good, f"About {result} {to}.", _CONVERSION_VAGUE, wrong


def _temperature(rand: _Rand) -> _Parts:
    if rand() < 0.5:
        c = int(rand() * 111) - 20
        f = c * 9 / 5 + 32
        prompt = _pick(rand, _TEMPERATURE_PROMPTS_C).format(x=c)
        good = (
            f"Use the formula °F = °C × 9/5 + 32. So {c} × 9/5 + 32 = {f:g}°F. "
            "As a reference point, water freezes at 0°C (32°F) and boils at 100°C (212°F) "
            "at sea level."
        )
        short = f"{f:g}°F."
        # Doubling without adding 32 never matches the true value in this range.
        wrong = f"Just double it: {c}°C is {2 * c}°F."
    else:
        fahrenheit = int(rand() * 181) - 20
        if fahrenheit == 32:
            # "Subtract 32" happens to be right at the freezing point.
            fahrenheit = 50
        celsius = (fahrenheit - 32) * 5 / 9
        prompt = _pick(rand, _TEMPERATURE_PROMPTS_F).format(x=fahrenheit)
        good = (
            f"Use the formula °C = (°F − 32) × 5/9. So ({fahrenheit} − 32) × 5/9 ≈ "
            f"{celsius:.1f}°C. As a reference point, normal body temperature is about "
            "98.6°F (37°C)."
        )
        short = f"About {celsius:.1f}°C."
        wrong = f"Just subtract 32: {fahrenheit}°F is {fahrenheit - 32}°C."
    return prompt, good, short, _CONVERSION_VAGUE, wrong


# planet, good answer, signature fact (unique to that planet)
_PLANETS: tuple[tuple[str, str, str], ...] = (
    (
        "Mercury",
        "Mercury is the smallest planet and the closest to the Sun, completing an orbit every 88 "
        "days. It has almost no atmosphere to hold in heat, so its surface swings from about "
        "430°C during the day to about -180°C at night. Its heavily cratered surface looks a lot "
        "like our Moon's, and it has no moons of its own.",
        "the smallest planet and the closest one to the Sun",
    ),
    (
        "Venus",
        "Venus is the second planet from the Sun and is similar in size to Earth, but its thick "
        "carbon dioxide atmosphere traps heat in a runaway greenhouse effect. That makes it the "
        "hottest planet, with surface temperatures around 465°C, hotter even than Mercury. It "
        "spins slowly and backward compared with most planets, taking about 243 Earth days to "
        "rotate once, longer than its 225-day year.",
        "the hottest planet in the solar system",
    ),
    (
        "Earth",
        "Earth is the third planet from the Sun and the only place known to support life. About "
        "71% of its surface is covered by water, and its atmosphere is mostly nitrogen and "
        "oxygen. Its magnetic field helps shield the surface from charged particles from the "
        "Sun, and it has one natural satellite, the Moon.",
        "the only planet known to support life",
    ),
    (
        "Mars",
        "Mars is the fourth planet from the Sun, and it looks red because its surface is rich in "
        "iron oxide, or rust. It has Olympus Mons, the tallest known volcano in the solar "
        "system, about two and a half times the height of Mount Everest, and two small moons, "
        "Phobos and Deimos. Its thin atmosphere is mostly carbon dioxide, and rovers have found "
        "strong evidence that liquid water once flowed on its surface.",
        "home to Olympus Mons, the tallest known volcano in the solar system",
    ),
    (
        "Jupiter",
        "Jupiter is the largest planet in the solar system, more than twice as massive as all "
        "the other planets combined. It's a gas giant made mostly of hydrogen and helium, and "
        "its Great Red Spot is a storm bigger than Earth that has been raging for at least 150 "
        "years. It has dozens of moons, including Ganymede, the largest moon in the solar system.",
        "the largest planet in the solar system",
    ),
    (
        "Saturn",
        "Saturn is the sixth planet from the Sun and is famous for its bright rings, made mostly "
        "of chunks of ice with some rock. It's a gas giant whose average density is lower than "
        "that of water. It has well over a hundred known moons, including Titan, which has a "
        "thick atmosphere and lakes of liquid methane and ethane.",
        "the least dense planet, with an average density lower than water's",
    ),
    (
        "Uranus",
        "Uranus is the seventh planet from the Sun and an ice giant, made largely of water, "
        "ammonia and methane ices around a rocky core. Its axis is tilted about 98 degrees, so "
        "it essentially rolls around the Sun on its side, giving it extreme seasons that each "
        "last about 21 years. Methane in its atmosphere gives it a pale blue-green color.",
        "the planet that rotates on its side",
    ),
    (
        "Neptune",
        "Neptune is the eighth and farthest planet from the Sun, about 30 times farther out than "
        "Earth. It was the first planet found by mathematical prediction rather than by "
        "observation, and was discovered in 1846. It has the fastest winds measured in the solar "
        "system, around 2,000 kilometers per hour, and its largest moon, Triton, orbits backward.",
        "the farthest planet from the Sun",
    ),
)
_PLANET_PROMPTS = (
    "Tell me about {planet}.",
    "What are some interesting facts about {planet}?",
    "I'm making a school poster about {planet}. What should I include?",
    "What makes {planet} special?",
)


def _science_planet(rand: _Rand) -> _Parts:
    count = len(_PLANETS)
    index = int(rand() * count)
    planet, good, signature = _PLANETS[index]
    other = _PLANETS[(index + 1 + int(rand() * (count - 1))) % count][2]
    prompt = _pick(rand, _PLANET_PROMPTS).format(planet=planet)
    vague = f"{planet} is one of the planets. It's pretty far away and interesting in its own way."
    return prompt, good, f"{planet} is {signature}.", vague, f"{planet} is {other}."


# dish, ingredient, amount, unit ("" for a count)
_DISHES: tuple[tuple[str, str, int, str], ...] = (
    ("lasagna", "ground beef", 500, "g"),
    ("banana bread", "flour", 250, "g"),
    ("chili", "kidney beans", 800, "g"),
    ("pancake", "milk", 300, "ml"),
    ("chocolate chip cookie", "butter", 225, "g"),
    ("vegetable curry", "coconut milk", 400, "ml"),
    ("mushroom risotto", "arborio rice", 320, "g"),
    ("guacamole", "avocados", 3, ""),
    ("quiche", "eggs", 4, ""),
    ("potato salad", "potatoes", 1000, "g"),
    ("tomato soup", "canned tomatoes", 800, "g"),
    ("shepherd's pie", "ground lamb", 600, "g"),
)
_BASE_SERVINGS = (2, 4, 6, 8)
_SCALE_PROMPTS = (
    "My {dish} recipe serves {m}, but I'm cooking for {n}. How should I adjust it?",
    "How do I scale a {dish} recipe from {m} servings to {n}?",
    "I have a {dish} recipe for {m} people and need to feed {n}. What should I change?",
)


def _amount(value: float, unit: str, ingredient: str) -> str:
    if unit:
        rounded = round(value / 5) * 5 if value >= 20 else round(value)
        return f"{rounded:,} {unit} of {ingredient}"
    # Whole items are rounded to the nearest half, which is as precise as a cook can measure.
    halves = max(1, round(value * 2))
    if halves == 2:
        return f"1 {ingredient.removesuffix('s')}"
    return f"{halves / 2:g} {ingredient}"


def _cooking_scale(rand: _Rand) -> _Parts:
    dish, ingredient, amount, unit = _pick(rand, _DISHES)
    m = _pick(rand, _BASE_SERVINGS)
    n = 2 + int(rand() * 23)
    if n == m:
        n += 2
    factor = n / m
    divisor = gcd(n, m)
    up, down = n // divisor, m // divisor
    ratio = f"{up}" if down == 1 else f"{up}/{down}, or about {factor:.2f}"
    prompt = _pick(rand, _SCALE_PROMPTS).format(dish=dish, m=m, n=n)
    example = (
        f"the {_amount(amount, unit, ingredient)} {'becomes' if unit else 'become'} about "
        f"{_amount(amount * factor, unit, ingredient)}"
    )
    if factor > 1:
        advice = (
            "Use a bigger pan or cook in batches, and check for doneness rather than relying on "
            "the original time, since a deeper dish takes longer. Scale salt and strong spices a "
            "little conservatively and adjust to taste."
        )
    else:
        advice = (
            "Use a smaller pan so the food isn't spread too thin, keep the oven temperature the "
            "same, and start checking for doneness a little earlier."
        )
    if ingredient == "eggs":
        advice += (
            " If you end up with part of an egg, beat it and measure out the fraction you need."
        )
    good = f"Multiply every ingredient by {ratio}. For example, {example}. {advice}"
    # The inverted ratio: a typical slip that shrinks the dish when it should grow, or vice versa.
    inverted = f"{down}" if up == 1 else f"{down}/{up}"
    wrong_amount = _amount(amount / factor, unit, ingredient)
    wrong = f"Multiply everything by {inverted}, so you'd use {wrong_amount}."
    short = f"Multiply each ingredient by {ratio.split(',')[0]}."
    vague = "Just eyeball it and add a bit more or less of everything until it looks right."
    return prompt, good, short, vague, wrong


# food, °F, °C, note
_SAFE_TEMPS: tuple[tuple[str, int, int, str], ...] = (
    ("chicken breasts", 165, 74, "Check the thickest part of each breast."),
    (
        "a whole turkey",
        165,
        74,
        "Check the innermost part of the thigh and wing and the thickest part of the breast.",
    ),
    (
        "chicken thighs",
        165,
        74,
        "Many cooks take thighs to around 175 to 185°F (79 to 85°C) for more tender meat, but "
        "165°F is the safe minimum.",
    ),
    (
        "beef burgers",
        160,
        71,
        "Ground meat needs a higher temperature than a whole steak because grinding spreads "
        "surface bacteria throughout the meat.",
    ),
    (
        "ground turkey",
        165,
        74,
        "Like all poultry, it should reach that temperature all the way through.",
    ),
    (
        "pork chops",
        145,
        63,
        "Let them rest for 3 minutes before eating; pork cooked to 145°F can still look slightly "
        "pink, and that's fine.",
    ),
    (
        "a beef steak",
        145,
        63,
        "That's the USDA minimum for whole cuts, followed by a 3-minute rest.",
    ),
    ("lamb chops", 145, 63, "Let them rest for 3 minutes after cooking."),
    ("salmon", 145, 63, "The flesh should also be opaque and separate easily with a fork."),
    (
        "meatloaf",
        160,
        71,
        "Because it's made from ground meat, it needs 160°F, or 165°F if it contains ground "
        "poultry.",
    ),
    ("leftover stew", 165, 74, "Stir it while reheating so it heats evenly all the way through."),
    ("an egg casserole", 160, 71, "Dishes made with eggs should reach 160°F in the center."),
)
_SAFE_TEMP_PROMPTS = (
    "What internal temperature should {food} reach?",
    "How do I know when {food} is safely cooked?",
    "What's the safe temperature for {food}?",
)


def _safe_temp_entries() -> tuple[tuple[tuple[str, ...], str, str, str], ...]:
    entries = []
    for food, fahrenheit, celsius, note in _SAFE_TEMPS:
        subject = _cap(food)
        good = (
            f"{subject} should reach an internal temperature of {fahrenheit}°F ({celsius}°C). "
            f"{note} Use an instant-read thermometer, because color alone isn't a reliable sign "
            "of doneness."
        )
        low_f = fahrenheit - 35
        low_c = round((low_f - 32) * 5 / 9)
        wrong = (
            f"{subject} is safe at {low_f}°F ({low_c}°C); if it looks done on the outside, it's "
            "done."
        )
        prompts = tuple(p.format(food=food) for p in _SAFE_TEMP_PROMPTS)
        entries.append((prompts, good, f"{fahrenheit}°F ({celsius}°C).", wrong))
    return tuple(entries)


_SAFE_TEMP_ENTRIES = _safe_temp_entries()
_SAFE_TEMP_VAGUE = "Cook it until it looks done. Everyone has their own preference."


def _cooking_temp(rand: _Rand) -> _Parts:
    prompts, good, short, wrong = _pick(rand, _SAFE_TEMP_ENTRIES)
    return _pick(rand, prompts), good, short, _SAFE_TEMP_VAGUE, wrong


# ingredient, dishes it is used in, good, too short, wrong
_SUBSTITUTES: tuple[tuple[str, tuple[str, ...], str, str, str], ...] = (
    (
        "buttermilk",
        ("pancakes", "biscuits", "a cake"),
        "For each cup of buttermilk, put 1 tablespoon of lemon juice or white vinegar in a "
        "measuring cup and add milk up to the 1-cup line. Let it sit for 5 to 10 minutes until "
        "it thickens slightly. Plain yogurt thinned with a little milk also works, and both "
        "provide the acidity that reacts with baking soda.",
        "Use milk with a tablespoon of lemon juice per cup.",
        "Use plain water instead; buttermilk doesn't affect the recipe.",
    ),
    (
        "eggs",
        ("muffins", "brownies", "pancakes"),
        "For each egg, mix 1 tablespoon of ground flaxseed with 3 tablespoons of water and let "
        "it sit for 5 minutes until it gels. You can also use 1/4 cup of unsweetened applesauce "
        "or mashed banana per egg, which adds moisture and a little sweetness. These swaps work "
        "best in recipes with one or two eggs, and the texture may be a little denser.",
        "Use a flax egg: 1 tablespoon of ground flaxseed plus 3 tablespoons of water.",
        "Just leave the eggs out without replacing them; they don't do anything in baking.",
    ),
    (
        "butter",
        ("muffins", "a quick bread", "brownies"),
        "Use a neutral oil, such as canola or sunflower oil, at about 3/4 cup of oil for every "
        "cup of butter. It works well in muffins, quick breads and brownies, which usually come "
        "out moist. Avoid swapping oil into recipes that cream butter with sugar, like many "
        "cookies, because the texture changes a lot.",
        "Use about 3/4 as much neutral oil.",
        "Replace the butter with the same amount of water; the fat doesn't matter.",
    ),
    (
        "baking powder",
        ("pancakes", "muffins", "biscuits"),
        "For each teaspoon of baking powder, use 1/4 teaspoon of baking soda plus 1/2 teaspoon "
        "of cream of tartar. Without cream of tartar, use the 1/4 teaspoon of baking soda and "
        "replace about 1/2 cup of the recipe's liquid with buttermilk or yogurt to supply the "
        "acid. Bake soon after mixing, because the reaction starts as soon as the ingredients "
        "get wet.",
        "Use 1/4 teaspoon of baking soda plus 1/2 teaspoon of cream of tartar per teaspoon.",
        "Use the same amount of baking soda; it works exactly the same way.",
    ),
    (
        "brown sugar",
        ("cookies", "banana bread", "a glaze"),
        "Mix 1 cup of white granulated sugar with 1 tablespoon of molasses for light brown "
        "sugar, or 2 tablespoons for dark brown sugar, and stir until the color is even. If you "
        "have no molasses, plain white sugar works too, but the result will be a little less "
        "moist and less caramel-flavored.",
        "Use white sugar plus a tablespoon of molasses per cup.",
        "Use the same amount of salt; it gives the same caramel flavor.",
    ),
    (
        "heavy cream",
        ("a pasta sauce", "a soup", "a casserole"),
        "For cooking, whisk 3/4 cup of whole milk with 1/4 cup of melted butter to replace 1 cup "
        "of heavy cream. It works in sauces and soups, but it won't whip. Half-and-half or "
        "evaporated milk are lighter options; either way, avoid a hard boil so the sauce doesn't "
        "separate.",
        "Use 3/4 cup of milk plus 1/4 cup of melted butter per cup.",
        "Use the same amount of water; the cream is only there for color.",
    ),
    (
        "sour cream",
        ("a dip", "a coffee cake", "tacos"),
        "Plain Greek yogurt is the easiest swap and works one-for-one in dips, toppings and most "
        "baked goods. It's a little tangier and lower in fat, so full-fat yogurt gives the "
        "closest texture, especially in baking.",
        "Use the same amount of plain Greek yogurt.",
        "Use the same amount of vinegar; it's just as thick and creamy.",
    ),
    (
        "self-rising flour",
        ("biscuits", "pancakes", "a sponge cake"),
        "For each cup of self-rising flour, use 1 cup of all-purpose flour plus 1 1/2 teaspoons "
        "of baking powder and 1/4 teaspoon of salt. Whisk them together well before adding the "
        "wet ingredients so the leavening is evenly distributed.",
        "Use all-purpose flour plus 1 1/2 teaspoons of baking powder and 1/4 teaspoon of salt "
        "per cup.",
        "Use plain all-purpose flour on its own; the results are identical.",
    ),
    (
        "cornstarch",
        ("a gravy", "a stir-fry sauce", "a fruit pie filling"),
        "Use about twice as much all-purpose flour as the cornstarch called for, so 2 "
        "tablespoons of flour for each tablespoon of cornstarch. Mix the flour with a little "
        "cold liquid first to avoid lumps, then simmer for a few minutes to cook out the raw "
        "taste. The result will be slightly cloudier than with cornstarch.",
        "Use twice as much all-purpose flour.",
        "Use baking soda instead; it thickens sauces the same way.",
    ),
    (
        "fresh herbs",
        ("a tomato sauce", "a soup", "a marinade"),
        "Use about one-third as much dried herb as fresh, so 1 teaspoon of dried for every "
        "tablespoon of fresh, because drying concentrates the flavor. Add dried herbs earlier in "
        "cooking so they have time to release their flavor. Delicate herbs like basil and "
        "parsley lose the most when dried, so you may want a little extra.",
        "Use a third as much dried herb.",
        "Use three times as much dried herb as fresh, because drying makes herbs weaker.",
    ),
)
_SUBSTITUTE_PROMPTS = (
    "I'm out of {ingredient}. What can I use instead in {dish}?",
    "What's a good substitute for {ingredient} in {dish}?",
    "Can I replace the {ingredient} in {dish}? What should I use?",
)
_SUBSTITUTE_VAGUE = "You can probably use something else you have around. Just experiment."
_SUBSTITUTE_ENTRIES = tuple(
    (
        tuple(p.format(ingredient=i, dish=d) for p in _SUBSTITUTE_PROMPTS for d in dishes),
        good,
        short,
        wrong,
    )
    for i, dishes, good, short, wrong in _SUBSTITUTES
)


def _cooking_substitute(rand: _Rand) -> _Parts:
    prompts, good, short, wrong = _pick(rand, _SUBSTITUTE_ENTRIES)
    return _pick(rand, prompts), good, short, _SUBSTITUTE_VAGUE, wrong


# place, season, conditions, things to pack, wrong claim
_TRIPS: tuple[tuple[str, str, str, tuple[str, ...], str], ...] = (
    (
        "Reykjavik",
        "winter",
        "Expect temperatures around freezing, strong wind, rain or snow, and only about four to "
        "five hours of daylight around December.",
        (
            "a warm insulated jacket",
            "a waterproof, windproof outer layer",
            "thermal base layers",
            "waterproof boots with good grip on ice",
            "a hat, gloves and a scarf",
        ),
        "Reykjavik is mild in winter, so shorts and sandals are all you need.",
    ),
    (
        "Bangkok",
        "the rainy season",
        "It's hot and humid, usually above 30°C, with heavy downpours on many afternoons.",
        (
            "light, breathable clothes",
            "a compact umbrella or light rain jacket",
            "sandals or quick-drying shoes",
            "insect repellent",
            "an outfit that covers your shoulders and knees for temple visits",
        ),
        "Bangkok is cold and dry in the rainy season, so bring a heavy winter coat.",
    ),
    (
        "London",
        "autumn",
        "Expect mild temperatures of roughly 8 to 16°C, lots of cloud and regular drizzle.",
        (
            "layers such as sweaters and long-sleeved tops",
            "a light waterproof jacket",
            "comfortable, water-resistant walking shoes",
            "a small umbrella",
        ),
        "London is hot and dry in autumn, so you won't need a jacket or an umbrella.",
    ),
    (
        "Tokyo",
        "summer",
        "It's hot and very humid, often above 30°C, with a rainy season through June and much of "
        "July and typhoons possible later in the summer.",
        (
            "lightweight, breathable clothing",
            "a small towel or handkerchief",
            "sunscreen and a hat",
            "a compact umbrella",
            "easy slip-on shoes, since you'll take them off in some restaurants and temples",
        ),
        "Tokyo summers are cool and dry, so pack warm sweaters and leave the umbrella at home.",
    ),
    (
        "Barcelona",
        "summer",
        "Expect sunny, hot days around 28 to 30°C, warm nights and very little rain.",
        (
            "light clothing",
            "swimwear and sandals",
            "sunscreen, sunglasses and a hat",
            "a reusable water bottle",
            "something that covers your shoulders and knees for visiting churches",
        ),
        "Barcelona is rainy and cold in summer, so bring a heavy coat and winter boots.",
    ),
    (
        "Sydney",
        "summer",
        "Summer there runs from December to February, with warm to hot days, often in the "
        "mid-20s to around 30°C, and very strong UV.",
        (
            "light clothing",
            "swimwear",
            "high-SPF sunscreen, a hat and sunglasses",
            "a light layer for air-conditioned places and cooler evenings",
        ),
        "Summer in Sydney is in July, when it's snowing, so bring ski gear.",
    ),
    (
        "New York City",
        "winter",
        "Expect temperatures around or below freezing, biting wind between the tall buildings "
        "and occasional snow.",
        (
            "a warm, windproof winter coat",
            "waterproof boots",
            "a hat, gloves and a scarf",
            "layers you can take off indoors, since buildings are well heated",
        ),
        "New York is warm in winter, so a T-shirt and a light jacket are enough.",
    ),
    (
        "Cape Town",
        "winter",
        "Winter there runs from June to August and is cool and wet, with daytime highs of about "
        "17 to 19°C, chilly nights and frequent rain.",
        (
            "a warm sweater or fleece",
            "a waterproof jacket",
            "closed shoes that can handle rain",
            "light layers for sunny afternoons",
        ),
        "Cape Town winters are hot and dry, so pack nothing but beachwear.",
    ),
    (
        "Marrakech",
        "spring",
        "Spring brings warm, sunny days in the 20s °C and noticeably cooler evenings.",
        (
            "light, breathable clothes that cover your shoulders and knees",
            "a light jacket or sweater for the evenings",
            "comfortable walking shoes for the medina",
            "sunscreen and sunglasses",
            "a light scarf for sun and dust",
        ),
        "Marrakech is freezing and snowy in spring, so bring a down jacket and snow boots.",
    ),
    (
        "the Swiss Alps",
        "winter",
        "Expect snow and temperatures well below freezing at altitude, with strong sunshine "
        "reflecting off the snow.",
        (
            "an insulated waterproof jacket and trousers",
            "thermal base layers",
            "warm, waterproof boots with good tread",
            "gloves, a warm hat and sunglasses or goggles",
            "high-SPF sunscreen and lip balm",
        ),
        "You don't need sunscreen in the Alps in winter, because the sun can't burn you when "
        "it's cold.",
    ),
    (
        "Vancouver",
        "autumn",
        "Autumn there is mild and very rainy, with temperatures around 8 to 15°C and many gray "
        "days.",
        (
            "a good waterproof jacket with a hood",
            "waterproof shoes",
            "warm layers like fleece or wool",
            "an umbrella",
        ),
        "Autumn in Vancouver is dry and sunny, so you won't need any rain gear.",
    ),
    (
        "Lisbon",
        "spring",
        "Spring is pleasant, with daytime temperatures of about 17 to 22°C, cooler evenings and "
        "occasional showers.",
        (
            "light layers and a light jacket",
            "comfortable shoes with good grip for the steep, cobbled streets",
            "sunglasses and sunscreen",
            "a small umbrella",
        ),
        "Lisbon is freezing in spring, so pack snow boots and a heavy parka.",
    ),
)
_PACKING_PROMPTS = (
    "What should I pack for {n} days in {place} in {season}?",
    "I'm going to {place} for {n} days in {season}. What should I bring?",
    "Can you help me with a packing list for a {n}-day trip to {place} in {season}?",
)
_PACKING_VAGUE = (
    "Just pack whatever you normally wear. You can always buy things there.",
    "Pack the usual stuff and you'll be fine.",
)


def _packing_entries() -> tuple[tuple[str, str, str, str, str, str], ...]:
    entries = []
    for place, season, conditions, items, wrong in _TRIPS:
        steps = "\n".join(f"{i}. {_cap(item)}" for i, item in enumerate(items, start=1))
        short = f"Pack {items[0]} and {items[1]}."
        entries.append((place, season, conditions, steps, short, wrong))
    return tuple(entries)


_PACKING_ENTRIES = _packing_entries()


def _travel_packing(rand: _Rand) -> _Parts:
    place, season, conditions, steps, short, wrong = _pick(rand, _PACKING_ENTRIES)
    n = 3 + int(rand() * 12)
    prompt = _pick(rand, _PACKING_PROMPTS).format(n=n, place=place, season=season)
    if n > 7:
        amount = f"For {n} days, pack clothes for about a week and plan to do laundry once."
    else:
        amount = f"For {n} days, bring {n} days' worth of underwear and socks plus a spare set."
    good = (
        f"{conditions} I'd pack:\n{steps}\n{amount} Check the forecast a few days before you leave."
    )
    return prompt, good, short, _pick(rand, _PACKING_VAGUE), wrong


# city, six sights, tip
_CITIES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    (
        "Paris",
        (
            "the Louvre",
            "the Eiffel Tower",
            "Montmartre and the Sacré-Cœur",
            "the Musée d'Orsay",
            "a walk along the Seine",
            "the Marais neighborhood",
        ),
        "Book Louvre tickets online in advance, and consider a Paris Museum Pass if you plan to "
        "visit several museums.",
    ),
    (
        "Rome",
        (
            "the Colosseum and the Roman Forum",
            "the Vatican Museums and the Sistine Chapel",
            "the Pantheon",
            "the Trevi Fountain",
            "the Trastevere neighborhood",
            "the Borghese Gallery",
        ),
        "Book the Vatican Museums online to skip the long lines, and remember they're closed on "
        "most Sundays.",
    ),
    (
        "London",
        (
            "the British Museum",
            "the Tower of London",
            "Westminster Abbey and the Houses of Parliament",
            "a walk along the South Bank",
            "Tate Modern",
            "Borough Market",
        ),
        "Many major museums, including the British Museum and Tate Modern, are free to enter, "
        "and a contactless card works on the Tube and buses.",
    ),
    (
        "Tokyo",
        (
            "Senso-ji temple in Asakusa",
            "Shibuya Crossing",
            "Meiji Shrine",
            "the Tsukiji Outer Market",
            "Shinjuku Gyoen National Garden",
            "the free observation decks at the Tokyo Metropolitan Government Building",
        ),
        "Get a rechargeable IC card such as Suica or Pasmo for trains, subways and convenience "
        "stores.",
    ),
    (
        "New York City",
        (
            "Central Park",
            "the Metropolitan Museum of Art",
            "the Statue of Liberty and Ellis Island",
            "a walk across the Brooklyn Bridge",
            "the High Line",
            "the Museum of Modern Art",
        ),
        "Book Statue of Liberty ferry tickets in advance from the official vendor, especially if "
        "you want pedestal or crown access.",
    ),
    (
        "Barcelona",
        (
            "the Sagrada Família",
            "Park Güell",
            "the Gothic Quarter",
            "La Boqueria market",
            "Casa Batlló",
            "Barceloneta beach",
        ),
        "Book the Sagrada Família and Park Güell ahead of time, since both use timed entry and "
        "often sell out.",
    ),
    (
        "Kyoto",
        (
            "Fushimi Inari shrine",
            "Kinkaku-ji, the Golden Pavilion",
            "the Arashiyama bamboo grove",
            "Kiyomizu-dera temple",
            "the Gion district",
            "Nishiki Market",
        ),
        "Visit Fushimi Inari early in the morning to avoid the crowds, and use buses or rent a "
        "bike to get around.",
    ),
    (
        "Istanbul",
        (
            "Hagia Sophia",
            "the Blue Mosque",
            "Topkapı Palace",
            "the Grand Bazaar",
            "a ferry ride on the Bosphorus",
            "the Basilica Cistern",
        ),
        "Dress modestly for mosque visits, with shoulders and knees covered, and bring a scarf "
        "to cover your hair if you're a woman.",
    ),
)
_ITINERARY_PROMPTS = (
    "Can you plan a {n}-day itinerary for {city}?",
    "I have {n} days in {city}. What should I see?",
    "What's a good {n}-day plan for a first visit to {city}?",
)


def _travel_itinerary(rand: _Rand) -> _Parts:
    count = len(_CITIES)
    index = int(rand() * count)
    city, sights, tip = _CITIES[index]
    other_sights = _CITIES[(index + 1 + int(rand() * (count - 1))) % count][1]
    n = 2 + int(rand() * 2)
    start = int(rand() * 6)
    order = [sights[(start + i) % 6] for i in range(2 * n)]
    days = "\n".join(
        f"Day {d + 1}: {_cap(order[2 * d])} in the morning, then {order[2 * d + 1]} in the "
        "afternoon."
        for d in range(n)
    )
    prompt = _pick(rand, _ITINERARY_PROMPTS).format(n=n, city=city)
    good = f"Here's a relaxed {n}-day plan for {city}:\n{days}\n{tip}"
    short = f"See {order[0]} and {order[1]}."
    wrong = (
        f"In {city}, start with {other_sights[0]}, then see {other_sights[1]}; they're the "
        "city's top sights."
    )
    vague = f"{city} has lots to see. Just walk around and you'll find things to do."
    return prompt, good, short, vague, wrong


# activity, plan, too short, wrong
_ACTIVITIES: tuple[tuple[str, str, str, str], ...] = (
    (
        "running",
        "Start with run-walk intervals, for example 1 minute of easy running followed by 2 "
        "minutes of walking, repeated for 20 to 30 minutes, three times a week. Each week, "
        "lengthen the running parts a little, and increase your total weekly time or distance by "
        "no more than about 10%. Run at a pace where you can still hold a conversation, and get "
        "shoes that fit you well.",
        "Start with run-walk intervals three times a week.",
        "Run as far and as fast as you can every day from the start; pain means it's working.",
    ),
    (
        "strength training",
        "Begin with two or three full-body sessions a week on non-consecutive days. Focus on "
        "basic movements such as squats, push-ups or presses, rows and hip hinges, doing 2 to 3 "
        "sets of 8 to 12 repetitions with a weight you can lift with good form. Increase the "
        "weight gradually once the last few reps feel easy, and consider a session with a "
        "qualified trainer to learn the technique.",
        "Do two or three full-body sessions a week with manageable weights.",
        "Lift the heaviest weight you can on day one, and train the same muscles every day "
        "without rest.",
    ),
    (
        "swimming",
        "Start with two or three sessions a week of 20 to 30 minutes. Swim single lengths with "
        "short rests in between, for example one length followed by 30 seconds of rest, and "
        "focus on relaxed, steady breathing. A few lessons or a technique class can make a big "
        "difference, and swim where there's a lifeguard until you're confident.",
        "Swim single lengths with rests, two or three times a week.",
        "Swim alone in open water far from shore on your first day; it's the fastest way to learn.",
    ),
    (
        "cycling",
        "Start with rides of 20 to 30 minutes at a comfortable pace, two or three times a week, "
        "on quiet roads or bike paths. Make sure the bike fits you, especially the saddle "
        "height, and always wear a helmet. Add 5 to 10 minutes per ride each week as your "
        "fitness improves.",
        "Start with short, easy rides and always wear a helmet.",
        "Skip the helmet and start with long rides on busy highways to build confidence quickly.",
    ),
    (
        "yoga",
        "Start with a beginner or gentle class, in person if you can, so an instructor can help "
        "with your alignment. Two or three sessions of 20 to 30 minutes a week is plenty at "
        "first. Move within a comfortable range, never into sharp pain, and use props like "
        "blocks and straps to make poses easier.",
        "Take a beginner class two or three times a week.",
        "Push into every pose as deeply as you can, even if it hurts; flexibility only comes "
        "from pain.",
    ),
    (
        "walking for fitness",
        "Start with 10 to 15 minutes of brisk walking a day, at a pace where you can talk but "
        "not sing, and add a few minutes each week. Work toward at least 150 minutes a week, "
        "such as 30 minutes on five days, which meets the WHO guideline for moderate activity. "
        "Comfortable, supportive shoes are the only gear you really need.",
        "Walk briskly for 10 to 15 minutes a day and build up from there.",
        "Walking doesn't count as exercise, so there's no point doing it.",
    ),
)
# how the user describes themselves, a tip that fits
_PEOPLE: tuple[tuple[str, str], ...] = (
    ("a complete beginner", "As a beginner, consistency matters much more than intensity."),
    (
        "in my 40s and out of shape",
        "Starting more gently than you think you need to will help you avoid injury and stay "
        "motivated.",
    ),
    (
        "coming back after a long break",
        "Your fitness will return faster than it took to build, but start at about half of what "
        "you used to do.",
    ),
    (
        "pretty busy with work",
        "Schedule your sessions like appointments; short sessions still count.",
    ),
    ("in my 60s", "It's a great age to start; go at your own pace and include some balance work."),
)
_ACTIVITY_PROMPTS = (
    "I want to start {activity}. I'm {who}. How should I begin?",
    "How should I get into {activity} if I'm {who}?",
    "I'm {who}. What's a good way to start {activity}?",
)
_DOCTOR_NOTE = (
    "If you have a heart condition, joint problems or other health concerns, check with a doctor "
    "before you start."
)
_ACTIVITY_VAGUE = "Just start doing it and see how you feel. Everyone is different."


def _health_activity(rand: _Rand) -> _Parts:
    activity, plan, short, wrong = _pick(rand, _ACTIVITIES)
    who, tip = _pick(rand, _PEOPLE)
    prompt = _pick(rand, _ACTIVITY_PROMPTS).format(activity=activity, who=who)
    return prompt, f"{plan} {tip} {_DOCTOR_NOTE}", short, _ACTIVITY_VAGUE, wrong


# the user's problem, a targeted tip, too short
_SLEEP_PROBLEMS: tuple[tuple[str, str, str], ...] = (
    (
        "I keep waking up in the middle of the night",
        "If you wake up and can't get back to sleep within about 20 minutes, get up and do "
        "something calm in dim light until you feel sleepy, rather than lying in bed watching "
        "the clock.",
        "Get up if you can't fall back asleep within 20 minutes.",
    ),
    (
        "I can't fall asleep at night",
        "Give yourself a wind-down routine of 30 to 60 minutes, such as reading or a warm "
        "shower, and if you can't fall asleep within about 20 minutes, get up and go back to bed "
        "only when you feel sleepy.",
        "Try a calm wind-down routine before bed.",
    ),
    (
        "I scroll on my phone in bed",
        "Put your phone away 30 to 60 minutes before bed and charge it outside the bedroom, "
        "since scrolling keeps your mind alert and the bright screen can delay sleepiness.",
        "Put your phone away an hour before bed.",
    ),
    (
        "I drink a lot of coffee",
        "Caffeine stays in your system for many hours, so have your last coffee at least 8 hours "
        "before bedtime, which for most people means early afternoon.",
        "Stop drinking coffee by early afternoon.",
    ),
    (
        "I work late shifts",
        "Keep your sleep window as consistent as you can, even on days off, make the bedroom "
        "completely dark with blackout curtains, and use earplugs or white noise to block "
        "daytime noise.",
        "Keep a consistent sleep window and make the room dark.",
    ),
    (
        "my bedroom gets really warm at night",
        "A cool room, around 16 to 19°C, helps most people sleep, so try lighter bedding, a fan, "
        "or opening a window if it's safe and quiet.",
        "Keep the bedroom cool, around 16 to 19°C.",
    ),
)
_SLEEP_PROMPTS = (
    "How can I sleep better? {problem}.",
    "{Problem}, and I'm always tired. Any tips?",
    "What can I do to improve my sleep? {Problem}.",
)
_SLEEP_HABITS = (
    "Beyond that, a few habits help most people:\n"
    "1. Go to bed and wake up at the same times every day, including weekends.\n"
    "2. Keep your bedroom dark, quiet and cool.\n"
    "3. Avoid large meals, alcohol and intense exercise close to bedtime.\n"
    "If poor sleep lasts for several weeks, or you snore loudly and feel exhausted during the "
    "day, talk to a doctor."
)
_SLEEP_WRONG = (
    "Have a couple of drinks before bed; alcohol gives you the deepest, most restful sleep.",
    "Sleep in as late as you can on weekends; your schedule doesn't matter as long as you catch "
    "up.",
)
_SLEEP_VAGUE = "Sleep is different for everyone. Just try to relax and it'll sort itself out."
_SLEEP_ENTRIES = tuple(
    (
        tuple(p.format(problem=problem, Problem=_cap(problem)) for p in _SLEEP_PROMPTS),
        f"{tip} {_SLEEP_HABITS}",
        short,
    )
    for problem, tip, short in _SLEEP_PROBLEMS
)


def _health_sleep(rand: _Rand) -> _Parts:
    prompts, good, short = _pick(rand, _SLEEP_ENTRIES)
    return _pick(rand, prompts), good, short, _SLEEP_VAGUE, _pick(rand, _SLEEP_WRONG)


# situation, good, too short, wrong
_FIRST_AID: tuple[tuple[str, str, str, str], ...] = (
    (
        "a minor burn",
        "Cool the burn under cool, not ice-cold, running water for about 20 minutes, and remove "
        "rings or tight items nearby before it swells. Then cover it loosely with a clean, "
        "non-fluffy dressing or cling film. Don't use ice, butter or toothpaste, and don't pop "
        "any blisters. Get medical help if the burn is larger than the palm of the person's "
        "hand, is on the face, hands or genitals, or looks deep or charred.",
        "Cool it under running water for 20 minutes.",
        "Put butter or ice directly on the burn to draw the heat out.",
    ),
    (
        "a nosebleed",
        "Sit down, lean slightly forward and pinch the soft part of your nose, just below the "
        "bony bridge, for 10 to 15 minutes without letting go. Breathe through your mouth and "
        "spit out any blood rather than swallowing it; leaning forward keeps it from running "
        "down your throat. Get medical help if the bleeding lasts more than 20 minutes, "
        "follows a head injury or happens often.",
        "Lean forward and pinch the soft part of your nose for 10 to 15 minutes.",
        "Tilt your head far back and lie down so the blood stops coming out.",
    ),
    (
        "a sprained ankle",
        "For the first couple of days, rest it and avoid activities that hurt, apply an ice pack "
        "wrapped in a cloth for 15 to 20 minutes every 2 to 3 hours, use a compression bandage "
        "for support, and keep the ankle raised when you can. Mild sprains usually start to "
        "improve within a few days. See a doctor if you can't put any weight on it, the pain is "
        "severe, or it isn't getting better.",
        "Rest, ice, compression and elevation.",
        "Put a heat pack on it right away and keep running on it to loosen it up.",
    ),
    (
        "a bee sting",
        "Remove the stinger as soon as possible, for example by scraping it out with a "
        "fingernail or the edge of a card. Wash the area with soap and water and apply a cold "
        "pack to reduce swelling and pain. Call emergency services right away if the person has "
        "trouble breathing, swelling of the face, lips or throat, dizziness or hives spreading "
        "over the body, because these can be signs of a severe allergic reaction.",
        "Remove the stinger quickly, wash the area and apply something cold.",
        "A bee sting is never serious, so there's no need for help even if someone's throat "
        "starts swelling.",
    ),
    (
        "a small cut",
        "Apply gentle, steady pressure with a clean cloth or bandage until the bleeding stops, "
        "which usually takes a few minutes. Rinse the cut under clean running water to remove "
        "dirt, then cover it with a sterile dressing or plaster. Get medical care if the cut is "
        "deep or gaping, keeps bleeding after 10 minutes of pressure, or shows signs of "
        "infection such as spreading redness, warmth or pus.",
        "Press on it until it stops bleeding, rinse it and cover it.",
        "Leave it dirty and uncovered; dirt helps the wound scab over faster.",
    ),
    (
        "a mild sunburn",
        "Get out of the sun, cool the skin with a cool shower or damp cloth, and apply a "
        "moisturizer or aloe vera gel. Drink extra water, and take an over-the-counter pain "
        "reliever such as ibuprofen if you need it. Don't pop any blisters. See a doctor if you "
        "have severe blistering, a fever or chills, or feel confused or faint.",
        "Cool the skin, moisturize it and drink plenty of water.",
        "Put on more sunscreen and go back out in the sun; that heals a burn faster.",
    ),
)
_FIRST_AID_PROMPTS = (
    "What should I do for {situation}?",
    "How do I treat {situation} at home?",
    "What's the right first aid for {situation}?",
)
_FIRST_AID_VAGUE = "It'll probably be fine. Just keep an eye on it."
_FIRST_AID_ENTRIES = tuple(
    (tuple(p.format(situation=situation) for p in _FIRST_AID_PROMPTS), good, short, wrong)
    for situation, good, short, wrong in _FIRST_AID
)


def _health_first_aid(rand: _Rand) -> _Parts:
    prompts, good, short, wrong = _pick(rand, _FIRST_AID_ENTRIES)
    return _pick(rand, prompts), good, short, _FIRST_AID_VAGUE, wrong


_PRINCIPALS = (1000, 2500, 5000, 10000, 20000, 50000)
_RATES = (2, 3, 4, 5, 6, 7, 8)
_COMPOUND_PROMPTS = (
    "If I invest ${p:,} at {r}% interest compounded annually, how much will I have after {t} "
    "years?",
    "How much will ${p:,} grow to in {t} years at {r}% a year, compounded annually?",
    "I'm putting ${p:,} into an account that pays {r}% a year, compounded annually. What will it "
    "be worth in {t} years?",
)
_COMPOUND_VAGUE = (
    "It depends on the market. Investments can go up or down, so there's no way to know."
)


def _finance_compound(rand: _Rand) -> _Parts:
    principal = _pick(rand, _PRINCIPALS)
    rate = _pick(rand, _RATES)
    years = 2 + int(rand() * 29)
    total = round(principal * (1 + rate / 100) ** years * 100)
    simple = round(principal * (1 + rate / 100 * years) * 100)
    prompt = _pick(rand, _COMPOUND_PROMPTS).format(p=principal, r=rate, t=years)
    good = (
        f"With annual compounding, use A = P × (1 + r)^t. Here that's ${principal:,} × "
        f"(1 + {rate / 100:g})^{years}, which comes to about {_money(total)}, so you'd earn about "
        f"{_money(total - principal * 100)} in interest. That assumes the rate stays fixed and you "
        "make no withdrawals; fees, taxes and inflation will reduce your real return."
    )
    wrong = (
        f"You'll have {_money(simple)}, because you just earn {rate}% of ${principal:,} each year."
    )
    return prompt, good, f"About {_money(total)}.", _COMPOUND_VAGUE, wrong


_GOALS = (3000, 5000, 8000, 10000, 15000, 20000, 25000)
_MONTHS = (6, 9, 10, 15, 18, 24, 30, 36, 48)
_PURPOSES = (
    "an emergency fund",
    "a down payment on a home",
    "a wedding",
    "a used car",
    "a big trip",
)
_SAVING_PROMPTS = (
    "How much do I need to save each month to have ${goal:,} for {purpose} in {months} months?",
    "I want to save ${goal:,} for {purpose} within {months} months. How much should I put aside "
    "each month?",
    "What monthly savings would get me to ${goal:,} for {purpose} in {months} months?",
)
_SAVING_VAGUE = "Just save as much as you can each month and you'll get there eventually."


def _finance_savings(rand: _Rand) -> _Parts:
    goal = _pick(rand, _GOALS)
    months = _pick(rand, _MONTHS)
    purpose = _pick(rand, _PURPOSES)
    monthly = round(goal * 100 / months)
    weekly = round(goal * 100 * 12 / (months * 52))
    prompt = _pick(rand, _SAVING_PROMPTS).format(goal=goal, purpose=purpose, months=months)
    good = (
        f"Divide the goal by the number of months: ${goal:,} ÷ {months} "
        f"{'=' if goal * 100 % months == 0 else '≈'} {_money(monthly)} a "
        f"month, or about {_money(weekly)} a week. Setting up an automatic transfer on payday "
        "makes "
        "it much easier to stay on track. If you keep the money in a high-yield savings account, "
        "the interest will get you there a little sooner."
    )
    wrong = (
        f"Divide the goal by 12: {_money(round(goal * 100 / 12))} a month will get you there in "
        f"{months} months."
    )
    return prompt, good, f"About {_money(monthly)} a month.", _SAVING_VAGUE, wrong


_TIP_PERCENTS = (10, 15, 18, 20, 22, 25)
_CENTS = (0, 25, 40, 50, 60, 75, 80, 95, 99)
_TIP_PROMPTS = (
    "What is {a} {p}% tip on a {bill} bill?",
    "My bill is {bill}. How much should I leave for {a} {p}% tip?",
    "How do I work out {a} {p}% tip on {bill}?",
)
_TIP_VAGUE = "Tip whatever feels right. There's no exact answer."


def _finance_tip(rand: _Rand) -> _Parts:
    percent = _pick(rand, _TIP_PERCENTS)
    bill = (12 + int(rand() * 239)) * 100 + _pick(rand, _CENTS)
    tip = round(bill * percent / 100)
    bill_text = _money(bill)
    article = "an" if percent == 18 else "a"  # the only rate in _TIP_PERCENTS read with "an"
    prompt = _pick(rand, _TIP_PROMPTS).format(a=article, p=percent, bill=bill_text)
    good = (
        f"{_cap(article)} {percent}% tip on {bill_text} is {_money(tip)}, which makes the total "
        f"{_money(bill + tip)}. To check it in your head, 10% of {bill_text} is "
        f"{_money(round(bill / 10))}, and you can scale from there."
    )
    wrong_tip = round(bill * percent / 1000)
    wrong = (
        f"{_cap(article)} {percent}% tip on {bill_text} is {_money(wrong_tip)}, so the total is "
        f"{_money(bill + wrong_tip)}."
    )
    return prompt, good, f"It's {_money(tip)}.", _TIP_VAGUE, wrong


# wordy sentence, concise rewrite
_WORDY: tuple[tuple[str, str], ...] = (
    (
        "In order to improve our results, we need to make a decision about the budget at this "
        "point in time.",
        "To improve our results, we need to decide on the budget now.",
    ),
    (
        "Due to the fact that the meeting ran late, a large number of people were unable to "
        "attend the workshop.",
        "Because the meeting ran late, many people couldn't attend the workshop.",
    ),
    (
        "At the end of the day, the reason why the project failed is because of the fact that we "
        "didn't plan.",
        "The project failed because we didn't plan.",
    ),
    (
        "It is absolutely essential that all employees make sure to completely finish their "
        "training by Friday.",
        "All employees must finish their training by Friday.",
    ),
    (
        "The report that was written by the team was reviewed by the manager in a very careful "
        "manner.",
        "The manager carefully reviewed the team's report.",
    ),
    (
        "We would like to take this opportunity to thank you for the help that you provided to us.",
        "Thank you for your help.",
    ),
    (
        "There are many students who find that it is difficult to focus in the afternoon.",
        "Many students find it hard to focus in the afternoon.",
    ),
    (
        "In spite of the fact that it was raining, the event was still held outside as had been "
        "planned.",
        "Despite the rain, the event was held outside as planned.",
    ),
    (
        "It is my personal opinion that we should give consideration to the possibility of "
        "hiring more staff.",
        "I think we should consider hiring more staff.",
    ),
    (
        "The new software has the ability to process data in a manner that is much faster than "
        "before.",
        "The new software processes data much faster.",
    ),
    (
        "Please be advised that the office will be closed for the duration of the holiday period.",
        "The office will be closed over the holidays.",
    ),
    (
        "With regard to your question, I will get back to you with an answer as soon as I "
        "possibly can.",
        "I'll answer your question as soon as I can.",
    ),
    (
        "A decision was made by the committee to postpone the launch until a later date.",
        "The committee postponed the launch.",
    ),
    (
        "Each and every one of the items on the list needs to be checked before we are able to "
        "move forward.",
        "Every item on the list must be checked before we proceed.",
    ),
    (
        "For all intents and purposes, the two designs are basically identical in terms of their "
        "overall function.",
        "The two designs work the same way.",
    ),
    (
        "Our team is in the process of conducting an investigation into the cause of the outage.",
        "Our team is investigating the cause of the outage.",
    ),
)
_CONCISE_PROMPTS = (
    'Make this sentence more concise: "{s}"',
    'Can you tighten up this sentence? "{s}"',
    'How can I say this in fewer words? "{s}"',
)
_CONCISE_NOTES = (
    "I cut filler phrases and redundant words and used more direct wording, so the meaning stays "
    "the same.",
    "Replacing wordy phrases with single words and using the active voice makes it easier to read.",
)
_CONCISE_VAGUE = "It's fine as it is. Conciseness is subjective anyway."


def _concise_entries() -> tuple[tuple[tuple[str, ...], tuple[str, ...], str, str], ...]:
    entries = []
    for wordy, concise in _WORDY:
        before, after = len(wordy.split()), len(concise.split())
        prompts = tuple(p.format(s=wordy) for p in _CONCISE_PROMPTS)
        goods = tuple(
            "Here's a more concise version:\n"
            f'"{concise}"\n'
            f"{note} That takes it from {before} words to {after}."
            for note in _CONCISE_NOTES
        )
        # Offered as "more concise" but longer than the original.
        wrong = f'A more concise version would be: "Basically, {wordy[0].lower()}{wordy[1:]}"'
        entries.append((prompts, goods, f'"{concise}"', wrong))
    return tuple(entries)


_CONCISE_ENTRIES = _concise_entries()


def _writing_concise(rand: _Rand) -> _Parts:
    prompts, goods, short, wrong = _pick(rand, _CONCISE_ENTRIES)
    return _pick(rand, prompts), _pick(rand, goods), short, _CONCISE_VAGUE, wrong


# what the email is for, three subject lines, tip
_EMAILS: tuple[tuple[str, tuple[str, str, str], str], ...] = (
    (
        "asking my manager for Friday off",
        (
            "Time off request: Friday, [date]",
            "Request for a day off this Friday",
            "PTO request for Friday [date]",
        ),
        "Putting the date in the subject lets your manager see the request at a glance.",
    ),
    (
        "following up after a job interview",
        (
            "Thank you for today's interview",
            "Following up on the [role] interview",
            "Thank you from [your name], [role] candidate",
        ),
        "Send it within 24 hours and mention something specific you discussed.",
    ),
    (
        "rescheduling a meeting with a client",
        (
            "Request to reschedule our Tuesday meeting",
            "New time for our [project] meeting?",
            "Rescheduling: [project] meeting on [date]",
        ),
        "Suggest two or three alternative times in the email so the client can reply quickly.",
    ),
    (
        "inviting my team to lunch",
        (
            "You're invited: team lunch on Thursday",
            "Join us for lunch this Thursday",
            "Team lunch: Thursday at 12:30",
        ),
        "Include the date, time and place in the body, and ask about dietary restrictions.",
    ),
    (
        "reminding a customer about an unpaid invoice",
        (
            "Friendly reminder: invoice #[number] due [date]",
            "Invoice #[number] is now past due",
            "Payment reminder for invoice #[number]",
        ),
        "Keep the tone polite and attach the invoice so it's easy to pay.",
    ),
    (
        "announcing a new feature to our users",
        ("New: [feature] is here", "Introducing [feature]", "You can now [benefit]"),
        "Lead with the benefit to the user rather than the technical details.",
    ),
    (
        "asking a colleague for feedback on a draft",
        (
            "Feedback request: [document] draft",
            "Could you review my draft by Friday?",
            "Quick review of the [project] proposal?",
        ),
        "Say what kind of feedback you want and when you need it.",
    ),
    (
        "introducing myself to a new client",
        (
            "Introduction: [your name] from [company]",
            "Hello from your new contact at [company]",
            "Nice to meet you: [your name], [company]",
        ),
        "Keep it short and friendly, and explain in the first lines how you'll be working "
        "together.",
    ),
)
_EMAIL_PROMPTS = (
    "Can you suggest a subject line for an email {purpose}?",
    "What's a good subject line for an email {purpose}?",
    "I'm writing an email {purpose}. What subject line should I use?",
)
_EMAIL_WRONG = (
    'Write it in ALL CAPS with lots of exclamation marks, like "URGENT!!! READ THIS NOW!!!", so '
    "nobody can ignore it."
)
_EMAIL_VAGUE = "Just write something that describes the email. It doesn't matter much."


def _email_entries() -> tuple[tuple[tuple[str, ...], str, str], ...]:
    entries = []
    for purpose, (a, b, c), tip in _EMAILS:
        good = (
            f"Here are a few options:\n1. {a}\n2. {b}\n3. {c}\nKeep subject lines short and "
            f"specific, ideally under about 50 characters, so they aren't cut off on phones. {tip}"
        )
        prompts = tuple(p.format(purpose=purpose) for p in _EMAIL_PROMPTS)
        entries.append((prompts, good, f'"{a}"'))
    return tuple(entries)


_EMAIL_ENTRIES = _email_entries()


def _writing_email(rand: _Rand) -> _Parts:
    prompts, good, short = _pick(rand, _EMAIL_ENTRIES)
    return _pick(rand, prompts), good, short, _EMAIL_VAGUE, _EMAIL_WRONG


# document, good, too short, wrong
_DOCUMENTS: tuple[tuple[str, str, str, str], ...] = (
    (
        "product description",
        "1. Open with the main benefit, not a list of specs.\n"
        "2. Say who it's for and what problem it solves.\n"
        "3. Use concrete details, such as dimensions, materials or battery life, instead of "
        'vague words like "high quality."\n'
        "4. Keep it easy to scan, with short paragraphs and bullet points for key features.\n"
        "End with anything that reduces the buyer's risk, such as a warranty or free returns.",
        "Lead with the main benefit and add concrete details.",
        "Fill it with as many buzzwords as you can and skip the details; customers never read "
        "specifics.",
    ),
    (
        "thank-you note",
        "1. Thank the person for something specific, such as a gift or a favor.\n"
        "2. Say how it helped you or how you'll use it.\n"
        "3. Add a warm personal line about your relationship or the next time you'll see each "
        "other.\n"
        "4. Close with thanks again and your name.\n"
        "Keep it short, and send it within a week or two while it still feels timely.",
        "Be specific about what you're thankful for.",
        "Use a generic template and send the same note to everyone; nobody notices the details.",
    ),
    (
        "project status update",
        "Start with a one-line summary of the overall status, such as on track, at risk or "
        "delayed. Then list what was completed, what's next, and any blockers or decisions you "
        "need, with owners and dates. Keep it short enough to read in a minute, use the same "
        "structure every time, and flag risks early rather than hiding them.",
        "Lead with the overall status, then progress, next steps and blockers.",
        "Leave out any problems so the project looks good; stakeholders only want good news.",
    ),
    (
        "README for an open-source project",
        "1. Start with the project name and a sentence or two on what it does and why it's "
        "useful.\n"
        "2. Show how to install it.\n"
        "3. Give a minimal usage example people can copy and run.\n"
        "4. Explain how to contribute and report bugs.\n"
        "5. State the license.\n"
        "Once the basics are covered, add screenshots and links to fuller documentation.",
        "Explain what it does, how to install it and how to use it.",
        "Skip the installation and usage instructions; if people can't figure out your code, "
        "they shouldn't use it.",
    ),
    (
        "wedding toast",
        "Keep it to about three to five minutes. Introduce yourself and how you know the couple, "
        "share one or two short, warm stories that show who they are, and say something kind "
        "about them as a couple. Avoid inside jokes, embarrassing stories and any mention of "
        "exes. Finish by inviting everyone to raise a glass to the couple.",
        "Keep it short, warm and personal.",
        "Talk for at least half an hour and include every embarrassing story you know, "
        "especially about their exes.",
    ),
    (
        "complaint letter to a company",
        "1. State the problem clearly in the first paragraph, including the product, the date "
        "and any order or account number.\n"
        "2. Describe what happened factually and calmly.\n"
        "3. Say exactly what resolution you want, such as a refund, repair or replacement, and "
        "by when.\n"
        "4. Attach copies of receipts or photos.\n"
        "A polite, specific letter is far more likely to get results than an angry one.",
        "Be specific and calm, and say what resolution you want.",
        "Be as rude and insulting as possible and don't say what you want; companies respond "
        "fastest to threats.",
    ),
)
_DOCUMENT_PROMPTS = (
    "How do I write a good {doc}?",
    "What are your tips for writing a {doc}?",
    "I need to write a {doc}. Where do I start?",
)
_DOCUMENT_VAGUE = "Just write from the heart. There's no wrong way to do it."
_DOCUMENT_ENTRIES = tuple(
    (tuple(p.format(doc=doc) for p in _DOCUMENT_PROMPTS), good, short, wrong)
    for doc, good, short, wrong in _DOCUMENTS
)


def _writing_document(rand: _Rand) -> _Parts:
    prompts, good, short, wrong = _pick(rand, _DOCUMENT_ENTRIES)
    return _pick(rand, prompts), good, short, _DOCUMENT_VAGUE, wrong


# event, year, when it happened, why it matters
_EVENTS: tuple[tuple[str, int, str, str], ...] = (
    (
        "the signing of the Magna Carta",
        1215,
        "in June 1215",
        "King John of England agreed to it under pressure from rebellious barons, and it "
        "established the principle that even the king is subject to the law. It later became an "
        "important symbol of constitutional government and individual rights.",
    ),
    (
        "the fall of Constantinople",
        1453,
        "on May 29, 1453",
        "The Ottoman Empire under Sultan Mehmed II captured the city, ending the Byzantine "
        "Empire, which had carried on the Eastern Roman Empire for about a thousand years. The "
        "city became the Ottoman capital, and the event is often used to mark the end of the "
        "Middle Ages.",
    ),
    (
        "Columbus's first voyage to the Americas",
        1492,
        "in 1492; he reached the Caribbean in October",
        "It began lasting contact between Europe and the Americas, leading to European "
        "colonization, the exchange of crops, animals and diseases known as the Columbian "
        "Exchange, and devastating consequences for Indigenous peoples.",
    ),
    (
        "the start of the Protestant Reformation",
        1517,
        "in 1517, when Martin Luther published his Ninety-five Theses",
        "Luther's challenge to practices of the Catholic Church spread quickly thanks to the "
        "printing press, split Western Christianity and led to new Protestant churches. It "
        "reshaped European politics, religion and education for centuries.",
    ),
    (
        "the adoption of the US Declaration of Independence",
        1776,
        "on July 4, 1776",
        "The thirteen American colonies declared independence from Great Britain, arguing that "
        "governments get their power from the consent of the governed. Its ideas influenced "
        "later democratic movements around the world.",
    ),
    (
        "the storming of the Bastille",
        1789,
        "on July 14, 1789",
        "Crowds in Paris seized the fortress and prison, a symbol of royal authority, in one of "
        "the first major events of the French Revolution. July 14 is now France's national "
        "holiday.",
    ),
    (
        "the Battle of Waterloo",
        1815,
        "on June 18, 1815, in present-day Belgium",
        "British-led allied forces under the Duke of Wellington and a Prussian army under "
        "Blücher defeated Napoleon, ending his rule for good. It closed the Napoleonic Wars and "
        "was followed by a long period of relative peace among Europe's great powers.",
    ),
    (
        "the ratification of the 13th Amendment",
        1865,
        "in December 1865",
        "It abolished slavery throughout the United States, except as punishment for a crime, at "
        "the end of the Civil War. It was the first of three Reconstruction amendments that "
        "reshaped American citizenship and civil rights.",
    ),
    (
        "the Wright brothers' first powered flight",
        1903,
        "on December 17, 1903, near Kitty Hawk, North Carolina",
        "Orville and Wilbur Wright made the first controlled, sustained flight of a powered, "
        "heavier-than-air aircraft; the first attempt lasted 12 seconds. It launched the age of "
        "aviation, which transformed travel, trade and warfare.",
    ),
    (
        "the start of World War I",
        1914,
        "in July 1914, a month after the assassination of Archduke Franz Ferdinand",
        "The war drew in the world's major powers, killed millions of soldiers and civilians, "
        "and brought down the German, Austro-Hungarian, Russian and Ottoman empires. Its peace "
        "settlements set the stage for many later conflicts.",
    ),
    (
        "the Russian Revolution",
        1917,
        "in 1917: the February Revolution ended the monarchy, and the Bolsheviks seized power in "
        "October",
        "It ended centuries of rule by the tsars and led to the creation of the Soviet Union, "
        "the first state founded on communist ideology, which shaped world politics for most of "
        "the 20th century.",
    ),
    (
        "the Wall Street Crash",
        1929,
        "in October 1929",
        "The collapse of US stock prices helped trigger the Great Depression, the worst economic "
        "downturn of the industrialized world, with mass unemployment in many countries through "
        "the 1930s.",
    ),
    (
        "the end of World War II",
        1945,
        "in 1945: Germany surrendered in May and Japan in September",
        "The war's end left the United States and the Soviet Union as superpowers, led to the "
        "founding of the United Nations and set the stage for the Cold War. It was also followed "
        "by a wave of decolonization.",
    ),
    (
        "Indian independence",
        1947,
        "on August 15, 1947",
        "India became independent from British rule after a long movement led by figures such as "
        "Mahatma Gandhi and Jawaharlal Nehru. The partition into India and Pakistan caused mass "
        "migration and violence, and independence inspired anti-colonial movements elsewhere.",
    ),
    (
        "the launch of Sputnik 1",
        1957,
        "on October 4, 1957",
        "The Soviet Union launched the first artificial satellite, shocking the United States "
        "and starting the space race. It led directly to the founding of NASA in 1958 and to "
        "major investment in science education.",
    ),
    (
        "the first Moon landing",
        1969,
        "on July 20, 1969",
        "NASA's Apollo 11 mission landed Neil Armstrong and Buzz Aldrin on the Moon while "
        "Michael Collins orbited above. It was the defining achievement of the space race and "
        "one of the most-watched events in history.",
    ),
    (
        "the fall of the Berlin Wall",
        1989,
        "on November 9, 1989",
        "East German authorities opened the border crossings, and crowds began tearing down the "
        "wall that had divided Berlin since 1961. It became a symbol of the end of the Cold War "
        "and led to German reunification in October 1990.",
    ),
    (
        "Nelson Mandela's release from prison",
        1990,
        "on February 11, 1990",
        "After 27 years in prison, Mandela was freed as South Africa began dismantling "
        "apartheid. He went on to help negotiate the transition to democracy and became the "
        "country's first Black president in 1994.",
    ),
)
_EVENT_PROMPTS = (
    "When did {event} happen, and why was it important?",
    "What was the significance of {event}, and when did it take place?",
    "Why does {event} matter? When was it?",
)
_EVENT_VAGUE = "It was a long time ago. It was important, but history is complicated."
_YEAR_ERRORS = (30, 50, 70, 100, 150)
_EVENT_ENTRIES = tuple(
    (
        tuple(p.format(event=event) for p in _EVENT_PROMPTS),
        f"{_cap(event)} happened {when}. {why}",
        f"In {year}.",
        _cap(event),
        year,
    )
    for event, year, when, why in _EVENTS
)


def _history_event(rand: _Rand) -> _Parts:
    prompts, good, short, subject, year = _pick(rand, _EVENT_ENTRIES)
    error = _pick(rand, _YEAR_ERRORS)
    wrong_year = year + error if year + error <= 2000 else year - error
    wrong = f"{subject} happened in {wrong_year}, and it didn't really change much."
    return _pick(rand, prompts), good, short, _EVENT_VAGUE, wrong


# name, good, what they are best known for (unique to them)
_PEOPLE_OF_HISTORY: tuple[tuple[str, str, str], ...] = (
    (
        "Marie Curie",
        "Marie Curie (1867-1934) was a Polish-born physicist and chemist who worked in France. "
        "She pioneered research on radioactivity, discovered the elements polonium and radium "
        "with her husband Pierre, and was the first woman to win a Nobel Prize. She remains the "
        "only person to win Nobel Prizes in two different sciences: physics in 1903 and "
        "chemistry in 1911.",
        "pioneering research on radioactivity",
    ),
    (
        "Leonardo da Vinci",
        "Leonardo da Vinci (1452-1519) was an Italian Renaissance painter, engineer and "
        "scientist. He painted the Mona Lisa and The Last Supper, and his notebooks are full of "
        "detailed anatomical drawings and designs for machines, including flying machines. The "
        'breadth of his interests makes him the classic example of a "Renaissance man."',
        "painting the Mona Lisa",
    ),
    (
        "Ada Lovelace",
        "Ada Lovelace (1815-1852) was an English mathematician who worked with Charles Babbage "
        "on his proposed Analytical Engine, a mechanical general-purpose computer. Her notes "
        "include a method for calculating Bernoulli numbers on the machine, often described as "
        "the first published computer program. She also saw that such machines could work with "
        "symbols, such as music, not just numbers.",
        "writing what is often called the first computer program",
    ),
    (
        "Nelson Mandela",
        "Nelson Mandela (1918-2013) was a South African anti-apartheid leader who spent 27 years "
        "in prison for his activism. After his release in 1990, he helped negotiate the end of "
        "apartheid, and in 1994 he became South Africa's first Black president, elected in the "
        "country's first fully democratic election. He shared the 1993 Nobel Peace Prize with F. "
        "W. de Klerk.",
        "leading the fight against apartheid in South Africa",
    ),
    (
        "Isaac Newton",
        "Isaac Newton (1643-1727) was an English mathematician and physicist. In his Principia, "
        "published in 1687, he set out the three laws of motion and the law of universal "
        "gravitation, which explained both falling objects and the orbits of the planets. He "
        "also developed calculus, independently of Leibniz, and did groundbreaking work on light "
        "and optics.",
        "formulating the laws of motion and universal gravitation",
    ),
    (
        "Cleopatra",
        "Cleopatra VII (69-30 BCE) was the last active ruler of the Ptolemaic Kingdom of Egypt. "
        "A skilled politician who reportedly spoke several languages, she formed alliances with "
        "Julius Caesar and later Mark Antony to protect Egypt's independence. After she and "
        "Antony were defeated by Octavian, Egypt became a Roman province.",
        "being the last active ruler of Ptolemaic Egypt",
    ),
    (
        "Mahatma Gandhi",
        "Mohandas Karamchand Gandhi (1869-1948), known as Mahatma Gandhi, led India's movement "
        "for independence from British rule. He championed nonviolent civil disobedience, for "
        "example in the 1930 Salt March, and his methods inspired civil rights movements "
        "worldwide, including Martin Luther King Jr.'s. India became independent in 1947, and "
        "Gandhi was assassinated the following year.",
        "leading India's nonviolent independence movement",
    ),
    (
        "Abraham Lincoln",
        "Abraham Lincoln (1809-1865) was the 16th president of the United States. He led the "
        "country through the Civil War, preserved the Union, and issued the Emancipation "
        "Proclamation in 1863, declaring enslaved people in the Confederate states free. He was "
        "assassinated in April 1865, days after the main Confederate army surrendered.",
        "leading the United States through the Civil War",
    ),
    (
        "Galileo Galilei",
        "Galileo Galilei (1564-1642) was an Italian astronomer and physicist. With telescopes he "
        "improved himself, he discovered the four largest moons of Jupiter, observed the phases "
        "of Venus and argued that Earth orbits the Sun. His support for that view led to his "
        "trial by the Roman Inquisition in 1633, and he spent his last years under house arrest.",
        "discovering the four largest moons of Jupiter",
    ),
    (
        "Frida Kahlo",
        "Frida Kahlo (1907-1954) was a Mexican painter known for her vivid self-portraits, which "
        "explore identity, pain and Mexican culture. A serious bus accident when she was 18 left "
        "her with lifelong health problems, which she often depicted in her work. Her family "
        "home in Mexico City, La Casa Azul, is now a museum.",
        "painting vivid self-portraits",
    ),
    (
        "Genghis Khan",
        "Genghis Khan (about 1162-1227) founded the Mongol Empire after uniting the nomadic "
        "tribes of the Mongolian steppe in 1206. Through his campaigns and those of his "
        "successors, it became the largest contiguous land empire in history. The empire also "
        "encouraged trade along the Silk Road and was known for its religious tolerance.",
        "founding the Mongol Empire",
    ),
    (
        "Martin Luther King Jr.",
        "Martin Luther King Jr. (1929-1968) was a Baptist minister and a leader of the American "
        "civil rights movement. He championed nonviolent protest, helped lead the Montgomery bus "
        'boycott and the 1963 March on Washington, where he gave his "I Have a Dream" speech, '
        "and won the Nobel Peace Prize in 1964. He was assassinated in Memphis in 1968.",
        "leading the American civil rights movement",
    ),
)
_PERSON_PROMPTS = (
    "Who was {name}?",
    "What is {name} known for?",
    "Can you tell me about {name}?",
    "Why is {name} important in history?",
)


def _history_person(rand: _Rand) -> _Parts:
    count = len(_PEOPLE_OF_HISTORY)
    index = int(rand() * count)
    name, good, known_for = _PEOPLE_OF_HISTORY[index]
    other = _PEOPLE_OF_HISTORY[(index + 1 + int(rand() * (count - 1))) % count][2]
    prompt = _pick(rand, _PERSON_PROMPTS).format(name=name)
    vague = f"{name} was a famous person from history who did a lot of important things."
    short = f"{name} is best known for {known_for}."
    return prompt, good, short, vague, f"{name} is best known for {other}."


_TEMPLATES: dict[str, tuple[_Source, ...]] = {
    "coding": (_coding_howto, _coding_http, _coding_git),
    "science": (_science_concept, _science_units, _science_planet),
    "cooking": (_cooking_scale, _cooking_temp, _cooking_substitute),
    "travel": (_travel_packing, _travel_itinerary),
    "health": (_health_activity, _health_sleep, _health_first_aid),
    "finance": (_finance_compound, _finance_savings, _finance_tip),
    "writing": (_writing_concise, _writing_email, _writing_document),
    "history": (_history_event, _history_person),
}

_SOURCES: tuple[tuple[_Source, ...], ...] = tuple(
    (_bank_source(_BANK[c], _VAGUE_BY_CATEGORY[c]), *_TEMPLATES[c]) for c in CATEGORIES
)
_OFF_TOPIC: tuple[tuple[str, ...], ...] = tuple(
    tuple(text for other in CATEGORIES if other != c for text in _OFF_TOPIC_BY_CATEGORY[other])
    for c in CATEGORIES
)
_SYSTEM: tuple[tuple[str, ...], ...] = tuple(
    _GENERIC_SYSTEM + (_CATEGORY_SYSTEM[c],) * 3 for c in CATEGORIES
)

# Bad answers are ordered short < vague < off-topic < wrong < dismissive; picking index
# combinations in increasing order keeps every record ranked best first.
_BAD_KINDS = 5
_COMBOS_BY_BAD_COUNT: tuple[tuple[tuple[int, ...], ...], ...] = tuple(
    tuple(combinations(range(_BAD_KINDS), k)) for k in (1, 2, 3)
)
# Cumulative probabilities of 2 and 3 responses; the rest get 4.
_TWO_RESPONSES = 0.4
_THREE_RESPONSES = 0.75


_DRAWS = 4


def iter_samples(num_samples: int, seed: int = 0) -> Iterator[SampleRecord]:
    """Yield ``num_samples`` sample records, deterministic for ``(num_samples, seed)``.

    The same arguments always give identical output, and the first k records of
    ``iter_samples(n, s)`` equal those of ``iter_samples(m, s)`` for k <= min(n, m).
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    return _generate(num_samples, seed)


def generate_samples(num_samples: int, seed: int = 0) -> list[SampleRecord]:
    """All records of :func:`iter_samples` as a list."""
    return list(iter_samples(num_samples, seed))


def _generate(num_samples: int, seed: int) -> Iterator[SampleRecord]:
    rand = random.Random(seed).random
    seen: set[str] = set()
    for _ in range(num_samples):
        # Redraw a prompt already given, a few times: small samples stay free of repeats,
        # and large ones, which exhaust the distinct prompts, still come out quickly.
        for _attempt in range(_DRAWS):
            record = _draw(rand)
            if record.prompt not in seen:
                break
        seen.add(record.prompt)
        yield record


def _draw(rand: _Rand) -> SampleRecord:
    num_categories = len(CATEGORIES)
    c = int(rand() * num_categories)
    sources = _SOURCES[c]
    prompt, good, short, vague, wrong = sources[int(rand() * len(sources))](rand)
    bad = (short, vague, _pick(rand, _OFF_TOPIC[c]), wrong, _pick(rand, _DISMISSIVE))
    u = rand()
    if u < _TWO_RESPONSES:
        (i,) = _pick(rand, _COMBOS_BY_BAD_COUNT[0])
        responses: tuple[str, ...] = (good, bad[i])
    elif u < _THREE_RESPONSES:
        i, j = _pick(rand, _COMBOS_BY_BAD_COUNT[1])
        responses = (good, bad[i], bad[j])
    else:
        i, j, k = _pick(rand, _COMBOS_BY_BAD_COUNT[2])
        responses = (good, bad[i], bad[j], bad[k])
    prompt = _pick(rand, _PREFIXES) + prompt + _pick(rand, _SUFFIXES)
    system = _pick(rand, _SYSTEM[c]) if rand() < _SYSTEM_RATE else None
    return SampleRecord(prompt, responses, CATEGORIES[c], system)
