"""Agreement corpus for the VADER port: sentences generated from templates
(deterministic seed) plus real post texts read at run time from the shared
fixtures (reddit listings, twitter search results); nothing is copied into
the repository.

    python3 tests/vader/corpus.py [FIXTURES_DIR] > corpus.jsonl   # one JSON string a line
"""
import glob
import json
import os
import random
import sys

POS = ["good", "great", "awesome", "excellent", "amazing", "nice", "happy",
       "love", "fantastic", "wonderful", "solid", "strong", "profit", "win",
       "like", "smart", "funny", "handsome", "fun", "cool", "best", "glad"]
NEG = ["bad", "terrible", "awful", "horrible", "hate", "sad", "ugly", "worst",
       "weak", "loss", "crash", "fear", "panic", "scam", "fraud", "sucks",
       "angry", "disappointing", "painful", "broken", "dumb", "lose"]
NEU = ["stock", "market", "company", "earnings", "report", "chart", "price",
       "shares", "quarter", "call", "week", "today", "guidance", "product",
       "team", "movie", "book", "plot", "phone", "service", "food"]
SUBJ = ["The stock", "This company", "The market", "Earnings", "The CEO",
        "My portfolio", "The movie", "The book", "It", "Everything", "VADER",
        "The plot", "Tesla", "The Fed", "This quarter", "The service"]
VERB = ["is", "was", "looks", "seems", "feels", "remains", "became"]
NEGATORS = ["not", "isn't", "never", "don't", "didn't", "doesn't", "cannot",
            "wasn't", "without", "hardly", "rarely", "seldom", "nothing",
            "aint", "cant", "wont", "nor", "NOT", "Not", "never so", "never this",
            "isnt", "despite", "none"]
BOOST = ["very", "extremely", "really", "so", "totally", "incredibly",
         "absolutely", "quite", "most", "more", "hella", "super", "VERY",
         "EXTREMELY", "Really", "deeply", "utterly"]
DAMP = ["kind of", "sort of", "kinda", "sorta", "somewhat", "barely",
        "hardly", "slightly", "a little", "marginally", "almost", "partly",
        "just enough", "KIND OF", "less", "occasionally"]
PUNCT = ["", ".", "!", "!!", "!!!", "!!!!", "!!!!!", "?", "??", "???",
         "????", "?!?", "!?!", "...", ",", "?!", " !", " ?!?!"]
EMOTICONS = [":)", ":(", ":D", "<3", ":-(", ";)", ":P", ":p", "xD", "XD",
             ":-)", ":/", ":'(", "=)", "lol", "LOL", "lmao", "haha", "</3",
             "D:", ":-P", "8-)", ":-Þ", ":Þ"]
EMOJI = ["\U0001F600", "\U0001F680", "\U0001F48E", "\U0001F622", "\U0001F4C8",
         "\U0001F4C9", "\u2764\ufe0f", "\U0001F525", "\U0001F921"]
IDIOMS = ["the shit", "the bomb", "bad ass", "yeah right", "cut the mustard",
          "kiss of death", "hand to mouth", "Yeah right", "THE BOMB"]
CASHTAGS = ["$AAPL", "$TSLA", "$GME", "$AMC", "$NVDA", "$SPY", "$MSFT",
            "$BRK.B", "$amzn", "($AAPL)", "$TSLA,", "$100", "$5.00"]
TICKERS = ["AAPL", "TSLA", "GME", "AMC", "NVDA", "SPY", "MSFT", "FUN", "LOVE"]
FIN = ["bullish", "bearish", "beat", "miss", "missed", "downgrade", "upgrade",
       "rally", "moon", "tank", "dump", "pump", "calls", "puts", "short",
       "squeeze", "dividend", "bankrupt", "bagholder", "tendies", "rekt",
       "guidance cut", "record revenue", "layoffs", "surge", "plunge", "beats",
       "misses", "upgraded", "downgraded", "outperform", "underperform"]
FIXED = [
    "VADER is smart, handsome, and funny.",
    "VADER is smart, handsome, and funny!",
    "VADER is very smart, handsome, and funny.",
    "VADER is VERY SMART, handsome, and FUNNY.",
    "VADER is VERY SMART, handsome, and FUNNY!!!",
    "VADER is VERY SMART, uber handsome, and FRIGGIN FUNNY!!!",
    "VADER is not smart, handsome, nor funny.",
    "The book was good.",
    "At least it isn't a horrible book.",
    "The book was only kind of good.",
    "The plot was good, but the characters are uncompelling and the dialog is not great.",
    "Today SUX!",
    "Today only kinda sux! But I'll get by, lol",
    "Make sure you :) or :D today!",
    "Catch utf-8 emoji such as \U0001F498 and \U0001F48B and \U0001F601",
    "Not bad at all",
    "no problems",
    "",
    "   ",
    "!!!",
    "a",
    "good",
    "GOOD",
    "good good good bad",
    "bad good bad good",
    "not good not good",
    "love it. love it not.",
    "Never so happy. never this good. never so bad",
    "It was the least bad option",
    "It was the very least I could do, at least it was good",
    "least good",
    "kind of kind of good",
    "the kind of day I love",
    "kind",
    "this is kind",
    "\u212aind of good",
    "Caf\u00e9 is GREAT but the CR\u00c8ME is BAD",
    "\u00c9T\u00c9 GOOD fun",
    "\u0130STANBUL is GREAT fun",
    "don\u2019t like it",
    "good\u00a0bad\u3000great\u2003terrible",
    "good\u200bbad",
    "word\x1cgood\x1fbad",
    "BUT it is good",
    "But it is good",
    "it is bad BUT good",
    "it is bad but good but bad",
    "This is not bad at all.",
    "He is the shit and the bomb",
    "she is a bad ass",
    "what a bad ass day",
    "yeah right, great",
    "it does not cut the mustard",
    "living hand to mouth is sad",
    "that was the kiss of death for them",
    "sort of the shit kind of",
    "so this is good",
    "never so good",
    "they never this good",
    "good, good. GOOD! good? good!!! good...",
    "(good) [bad] {great} 'nice' \"awful\"",
    "good,bad,great",
    "!good !!bad ??great ?!?nice !?!?awful ::good ..bad",
    "good! bad!! great!!! nice?? awful??? fine?!? ok!?! bad?!?! worse!?!?",
    "good!!!! bad.. great,, nice;; awful:",
    "-good- 'bad' \"great\" ;nice :awful",
    "I can't believe how good this is",
    "I CAN'T believe how BAD this is",
    "it's not that it's bad",
    "ain't no sunshine",
    "uh-uh not good",
    "UH-UH GOOD",
    "nope. good",
]


def templates(rng):
    out = []
    def pick(lst):
        return rng.choice(lst)
    def word():
        return pick(POS + NEG)
    for _ in range(400):
        out.append(f"{pick(SUBJ)} {pick(VERB)} {word()}{pick(PUNCT)}")
    for _ in range(450):
        out.append(f"{pick(SUBJ)} {pick(VERB)} {pick(NEGATORS)} {pick(['', pick(BOOST) + ' ', pick(DAMP) + ' '])}{word()}{pick(PUNCT)}")
    for _ in range(300):
        out.append(f"{pick(SUBJ)} {pick(VERB)} {pick(BOOST)} {word()} {pick(['but', 'BUT', 'But', 'and', 'yet'])} {pick(['the', 'its', ''])} {pick(NEU)} {pick(VERB)} {word()}{pick(PUNCT)}")
    for _ in range(200):
        out.append(f"{pick(['But', 'but', 'BUT'])} {pick(SUBJ).lower()} {pick(VERB)} {word()}, {word()}{pick(PUNCT)}")
    for _ in range(300):
        w = word()
        s = f"{pick(SUBJ)} {pick(VERB)} {pick(DAMP + BOOST)} {rng.choice([w, w.upper()])} {pick(['', 'and ' + word().upper(), 'and ' + word()])}{pick(PUNCT)}"
        out.append(rng.choice([s, s.upper(), s]))
    for _ in range(200):
        out.append(f"{pick(SUBJ)} {pick(VERB)} {word()} {pick(EMOTICONS)} {pick(EMOJI)}{pick(PUNCT)} {pick(EMOTICONS)}")
    for _ in range(200):
        out.append(f"{pick(['Honestly', 'wow', 'Man', 'ok', 'So'])} {pick(SUBJ).lower()} is {pick(IDIOMS)} {pick(['', word(), 'and ' + word()])}{pick(PUNCT)}")
    for _ in range(150):
        out.append(f"{pick(['at least', 'the least', 'very least', 'least', 'At least it is not'])} {word()} {pick(NEU)}{pick(PUNCT)}")
    for _ in range(500):
        out.append(f"{pick(CASHTAGS)} {pick(['is', 'looks', 'going', 'feels'])} {pick(FIN)} {pick(['', 'after ' + pick(FIN), 'and ' + word(), pick(EMOJI)])} {pick(TICKERS)} {pick(['', 'to the moon', 'calls', 'puts', pick(EMOTICONS)])}{pick(PUNCT)}")
    for _ in range(250):
        out.append(f"{pick(TICKERS)} {pick(FIN)} {pick(NEGATORS)} {pick(FIN)}, {pick(['but', 'and'])} {pick(CASHTAGS)} {pick(BOOST)} {word()}{pick(PUNCT)}")
    for _ in range(250):   # repeated tokens: scored in the first occurrence's context
        a, b = word(), word()
        out.append(f"{a} {pick(NEGATORS)} {b} {pick(BOOST)} {a} {pick(['but', 'and'])} not {b} {a}{pick(PUNCT)}")
    for _ in range(250):   # random bags of everything
        pool = POS + NEG + NEU + NEGATORS + BOOST + DAMP + EMOTICONS + IDIOMS + FIN + CASHTAGS + ["but", "least", "kind", "of", "so", "this", "never", "at", "very"]
        words = [pick(pool) for _ in range(rng.randint(3, 25))]
        words = [w.upper() if rng.random() < 0.15 else w for w in words]
        words = [w + pick(PUNCT) if rng.random() < 0.2 else w for w in words]
        out.append(" ".join(words))
    return out


def fixtures(root):
    texts = []
    for path in sorted(glob.glob(os.path.join(root, "reddit", "*.json"))):
        if path.endswith(".meta.json"):
            continue
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        data = doc.get("data") if isinstance(doc, dict) else None
        for child in (data or {}).get("children", []) if isinstance(data, dict) else []:
            for key in ("title", "selftext"):
                t = child.get("data", {}).get(key)
                if t:
                    texts.append(t)
    for path in sorted(glob.glob(os.path.join(root, "twitter", "*.json"))):
        if path.endswith(".meta.json"):
            continue
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        for tw in doc.get("data", []) if isinstance(doc.get("data"), list) else []:
            if tw.get("text"):
                texts.append(tw["text"])
    return texts


def corpus(root=None):
    if root is None:
        here = os.path.dirname(os.path.abspath(__file__))
        root = os.path.normpath(os.path.join(here, "..", "..", "..", "shared", "fixtures"))
    rng = random.Random(20140601)
    return FIXED + templates(rng) + fixtures(root)


if __name__ == "__main__":
    for t in corpus(sys.argv[1] if len(sys.argv) > 1 else None):
        print(json.dumps(t))
