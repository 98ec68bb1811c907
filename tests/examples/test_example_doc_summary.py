"""The doc-summary agents: chunks are the document's paragraphs, every summary sentence is a
sentence of the document, keywords reflect its topic, and the reducer merges partials."""

from __future__ import annotations

import json
import math
import re
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

FOLDER = Path(__file__).resolve().parents[2] / "examples" / "doc-summary"
DOC = {"task": "Summarise this document", "document_file": "document.md"}


def normalised(text: str) -> str:
    return re.sub(r"\s+", " ", text)


@pytest.fixture(scope="module")
def document() -> str:
    return normalised((FOLDER / "document.md").read_text())


def test_chunker_splits_paragraphs_and_drops_the_heading(docs: ModuleType, document: str) -> None:
    result = docs.chunker("t", DOC, {"chunkBy": "paragraph"})
    chunks = result["value"]["chunks"]
    assert len(chunks) == 6 and result["confidence"] == 1.0
    assert all(c["text"] in document for c in chunks)
    assert not any(c["text"].startswith("#") for c in chunks)
    assert docs.chunker("t", DOC, {"chunkBy": "section"})["value"]["count"] == 1


def test_chunk_summaries_are_document_sentences_in_order(docs: ModuleType, document: str) -> None:
    for chunk in docs.chunker("t", DOC, {})["value"]["chunks"]:
        result = docs.chunk_summarizer("t", chunk, {})
        value = result["value"]
        assert value["chunk_index"] == chunk["index"]
        assert len(value["sentences"]) == math.ceil(value["sentence_count"] / 3)
        assert value["selected"] == sorted(value["selected"])
        for sentence in value["sentences"]:
            assert sentence in document and sentence in chunk["text"]
        assert 0.0 <= result["confidence"] <= 0.95


def test_sentence_scores_prefer_the_chunk_topic(docs: ModuleType) -> None:
    chunk = ("Cats sleep a lot. The lighthouse lens bends lighthouse light into a lens beam. "
             "It rained.")
    value = docs.chunk_summarizer("t", {"chunk": chunk}, {})["value"]
    assert value["sentences"] == ["The lighthouse lens bends lighthouse light into a lens beam."]


def test_split_sentences_keeps_abbreviations(docs: ModuleType) -> None:
    assert docs.split_sentences("Use a lens, e.g. Fresnel rings. It works! Done?") == [
        "Use a lens, e.g. Fresnel rings.", "It works!", "Done?"]


def test_keywords_reflect_the_topic(docs: ModuleType) -> None:
    result = docs.keyword_extractor("t", DOC, {})
    terms = result["value"]["terms"]
    assert {"lens", "light", "lighthouse", "fresnel"} <= set(terms)
    assert len(terms) == 10 and not set(terms) & docs.STOPWORDS
    assert result["confidence"] == pytest.approx(
        min(0.95, 0.5 + 0.5 * result["metadata"]["share"]), abs=1e-3)


def test_reducer_merges_partials_into_document_sentences(docs: ModuleType, document: str) -> None:
    chunks = docs.chunker("t", DOC, {})["value"]
    partials = [docs.chunk_summarizer("t", c, {}) for c in chunks["chunks"]]
    keywords = docs.keyword_extractor("t", DOC, {})
    result = docs.reducer("t", {"results": partials, "keywords": keywords["value"]},
                          {"maxSentences": 6})
    value = result["value"]
    assert 1 <= len(value["sentences"]) <= 6
    assert all(s in document for s in value["sentences"])
    positions = [document.index(s) for s in value["sentences"]]
    assert positions == sorted(positions)
    assert value["chunks_covered"] == [0, 1, 2, 3, 4, 5]
    partial_sentences = {s for p in partials for s in p["value"]["sentences"]}
    assert set(value["sentences"]) <= partial_sentences
    mean_partial = sum(p["confidence"] for p in partials) / len(partials)
    meta = result["metadata"]
    assert result["confidence"] == pytest.approx(
        mean_partial * (0.6 + 0.2 * meta["chunk_coverage"] + 0.2 * meta["keyword_coverage"]),
        abs=1e-3)


def test_reducer_drops_duplicates_and_can_map_by_itself(docs: ModuleType, document: str) -> None:
    whole = docs.chunk_summarizer("t", DOC, {})
    assert whole["value"]["chunk_count"] == 6
    doubled = docs.reducer("t", [whole, whole], {})
    assert doubled["value"]["dropped_duplicates"] == len(
        [s for c in whole["value"]["chunks"] for s in c["sentences"]])
    assert len(set(doubled["value"]["sentences"])) == len(doubled["value"]["sentences"])
    alone = docs.reducer("t", DOC, {})
    assert alone["metadata"]["mapped_here"] is True
    assert len(alone["value"]["sentences"]) == docs.DEFAULT_MAX_SENTENCES
    assert all(s in document for s in alone["value"]["sentences"])
    assert docs.reducer("t", DOC, {}) == alone


def test_declarations(docs: ModuleType) -> None:
    agents = tomllib.loads((FOLDER / "agents.toml").read_text())["agents"]
    for spec in agents.values():
        assert spec["transport"] == "python"
        assert callable(getattr(docs, spec["target"].partition(":")[2]))
    req = json.loads((FOLDER / "requirements.json").read_text())
    assert req["strategy"] == "map-reduce" and req["context"]["chunkBy"] == "paragraph"
    assert (FOLDER / req["input"]["document_file"]).is_file()
