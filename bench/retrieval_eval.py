"""Retrieval measured on the labelled question set (tests/data/retrieval_questions.tsv) over
the bundled knowledge: hit@1, hit@3 and MRR on the answerable questions (paraphrases and phone
transcription errors), and, at each retriever's best score gate on this set, how many
questions get the right call (right passage above the gate, or nothing for the unanswerable).

    .venv/bin/python bench/retrieval_eval.py [--candidates]

`--candidates` also runs the libraries compared when the retriever was chosen (bm25s,
rank-bm25, scikit-learn TF-IDF); they are not dependencies of the relay.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from relay.knowledge.base import KnowledgeBase, Passage, terms, words  # noqa: E402
from relay.knowledge.retrieval import Retriever, evaluate, load_questions  # noqa: E402

Scorer = Callable[[str], dict[str, float]]  # query → passage id → score


def _library_candidates(passages: tuple[Passage, ...]) -> dict[str, Scorer]:
    import bm25s
    from rank_bm25 import BM25Okapi
    from sklearn.feature_extraction.text import TfidfVectorizer

    docs = [" ".join([*p.phrasings(), p.title, p.text]) for p in passages]
    ids = [p.id for p in passages]
    candidates: dict[str, Scorer] = {}

    tokenized = [terms(d) for d in docs]
    index = bm25s.BM25()
    index.index(tokenized, show_progress=False)
    candidates["bm25s (passage text)"] = lambda q: dict(zip(ids, map(float, index.get_scores(terms(q))), strict=True))

    okapi = BM25Okapi(tokenized)
    candidates["rank-bm25 Okapi (passage text)"] = lambda q: dict(
        zip(ids, map(float, okapi.get_scores(terms(q))), strict=True)
    )

    phrasings = [(i, text) for i, p in enumerate(passages) for text in p.phrasings()]
    vectorizer = TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True)
    matrix = vectorizer.fit_transform([" ".join(words(t)) for _, t in phrasings])

    def word_tfidf(query: str) -> dict[str, float]:
        sims = (matrix @ vectorizer.transform([" ".join(words(query))]).T).toarray().ravel()
        best: dict[str, float] = {}
        for (i, _), s in zip(phrasings, sims, strict=True):
            best[ids[i]] = max(best.get(ids[i], 0.0), float(s))
        return best

    candidates["tf-idf words 1-2 (phrasings)"] = word_tfidf
    return candidates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", action="store_true", help="also run the libraries compared")
    args = parser.parse_args()
    kb = KnowledgeBase.load(ROOT / "prompts" / "knowledge")
    questions = load_questions(ROOT / "tests" / "data" / "retrieval_questions.tsv")
    scorers: dict[str, Scorer] = {"relay: char n-gram TF-IDF": Retriever(kb).scores}
    if args.candidates:
        scorers.update(_library_candidates(kb.passages))
    answerable = sum(1 for q in questions if q.expected)
    unanswerable = len(questions) - answerable
    print(f"{len(kb.passages)} passages; {answerable} answerable questions, {unanswerable} without answer")
    print(f"{'retriever':34} {'hit@1':>6} {'hit@3':>6} {'MRR':>6} {'gate':>6} {'right call':>10} {'µs/query':>9}")
    for name, scorer in scorers.items():
        started = time.perf_counter()
        report = evaluate(scorer, questions)
        per_query = (time.perf_counter() - started) / len(questions) * 1e6
        print(
            f"{name:34} {report.hit_at_1:6.3f} {report.hit_at_3:6.3f} {report.mrr:6.3f} "
            f"{report.best_gate:6.3f} {report.best_accuracy:10.3f} {per_query:9.0f}"
        )
        for kind, (hits, total) in sorted(report.by_kind.items()):
            print(f"{'':34}   {kind}: {hits}/{total} right at the gate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
