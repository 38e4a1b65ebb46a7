"""The retriever scores a query itself (no scikit-learn on the event loop): its n-grams and
its scores must be scikit-learn's, on the labelled questions, on odd inputs and on arbitrary
text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.knowledge.base import KnowledgeBase, words
from relay.knowledge.retrieval import Retriever, char_wb_ngrams, load_questions

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = load_questions(ROOT / "tests" / "data" / "retrieval_questions.tsv")


@pytest.fixture(scope="module")
def retriever() -> Retriever:
    return Retriever(KnowledgeBase.load(ROOT / "prompts" / "knowledge"))


def sklearn_scores(retriever: Retriever, query: str) -> np.ndarray[Any, Any]:
    """What the retriever computed before: scikit-learn's transform, then the cosine."""
    text = " ".join(words(query))
    if not text:
        return np.zeros(len(retriever.knowledge.passages), dtype=np.float32)
    vector = retriever._vectorizer.transform([text])
    return np.asarray((retriever._matrix @ vector.T).toarray().ravel())


ODD = ["", "a", "I", "ok ok ok ok", "pass word", "credit cart", "zzzzzzzzzz qqq", "é à ü", "x" * 300, "a b c d e"]


@pytest.mark.parametrize("query", [q.text for q in QUESTIONS] + ODD)
def test_scores_are_scikit_learns(retriever: Retriever, query: str) -> None:
    ours = retriever._similarities(query)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, sklearn_scores(retriever, query), rtol=0, atol=2e-6)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from("abcdeorst '-é\t\n"), max_size=60))
def test_ngrams_are_scikit_learns_char_wb(text: str) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    analyzer = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5)).build_analyzer()
    normalized = " ".join(text.lower().split())
    assert char_wb_ngrams(normalized) == analyzer(normalized)


def test_search_ranks_as_scikit_learn_does(retriever: Retriever) -> None:
    for q in QUESTIONS:
        expected = sklearn_scores(retriever, q.text)
        order = [h.passage.id for h in retriever.search(q.text, k=3)]
        top = np.argsort(-expected, kind="stable")[:3]
        assert order == [retriever.knowledge.passages[i].id for i in top if expected[i] > 0]
