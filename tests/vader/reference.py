"""NLTK's VADER over the agreement corpus: one JSON object a line,
{"text", "neg", "neu", "pos", "compound"}.

    /usr/bin/python3 tests/vader/reference.py LEXICON [FIXTURES_DIR]

LEXICON is vader_lexicon.txt from the npm package vader-sentiment (see
scripts/lexicons.sh).  NLTK's make_lex_dict() splits the file on "\n" and
fails on the empty string after the file's final newline, so NLTK is given a
temporary copy without that one trailing newline; the rows are unchanged.
"""
import json
import os
import sys
import tempfile

from nltk.sentiment.vader import SentimentIntensityAnalyzer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corpus  # noqa: E402


def analyzer(lexicon_path):
    with open(lexicon_path, encoding="utf-8") as f:
        text = f.read()
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8", delete=False) as tmp:
        tmp.write(text.rstrip("\n"))
    try:
        return SentimentIntensityAnalyzer(lexicon_file="file:" + tmp.name)
    finally:
        os.unlink(tmp.name)


def main():
    sia = analyzer(sys.argv[1])
    out = sys.stdout
    for text in corpus.corpus(sys.argv[2] if len(sys.argv) > 2 else None):
        s = sia.polarity_scores(text)
        out.write(json.dumps({"text": text, "neg": s["neg"], "neu": s["neu"],
                              "pos": s["pos"], "compound": s["compound"]}) + "\n")


if __name__ == "__main__":
    main()
