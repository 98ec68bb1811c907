"""Document-summary agents for a map-reduce pattern: a chunker, an extractive chunk
summariser (term-frequency sentence scoring), a TF-IDF keyword extractor and a reducer
(editor) that merges partial summaries. Every sentence returned is a document sentence."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

DEFAULT_RATIO = 1 / 3
DEFAULT_MAX_SENTENCES = 5
DEFAULT_MAX_KEYWORDS = 10
DUPLICATE_JACCARD = 0.6
CONFIDENCE_CAP = 0.95

STOPWORDS = frozenset("""
a about above after again against all almost also although am among an and another any are
as at be became because become been before being below between both but by can could did do
does doing done down during each either else even ever every few for from further had has
have having he her here hers him his how however i if in into is it its itself just less
little made make many may might more most much must my near no nor not of off often on once
one only or other others our out over own per quite rather same she should since so some
still such than that the their them then there these they this those though through thus to
too under until up upon us very was we well were what when where whether which while who
whom whose why will with within without would yet you your
""".split())
ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.", "mr.", "mrs.", "ms.", "dr.", "st.", "no.",
                 "fig.", "approx.", "cf.")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[]?[A-Z0-9])")
_WORD = re.compile(r"[a-z][a-z'-]*[a-z]|[a-z]")


# --------------------------------------------------------------------------- text utilities


def split_sentences(paragraph: str) -> list[str]:
    """Split a paragraph into sentences, re-joining breaks after common abbreviations."""
    text = re.sub(r"\s+", " ", paragraph).strip()
    if not text:
        return []
    pieces, start = [], 0
    for match in _SENTENCE_BREAK.finditer(text):
        candidate = text[start:match.start()].rstrip() + text[match.start():match.end()].rstrip()
        if candidate.lower().endswith(ABBREVIATIONS):
            continue
        pieces.append(candidate.strip())
        start = match.end()
    pieces.append(text[start:].strip())
    return [p for p in pieces if p]


def chunk_document(text: str, chunk_by: str = "paragraph") -> list[str]:
    """Split markdown into chunks: 'paragraph' (blank-line blocks) or 'section' (headings).

    Headings and code blocks are not prose: they end a chunk and are left out of it.
    """
    blocks: list[list[str]] = [[]]
    in_code = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        if stripped.startswith("#"):
            blocks.append([])
        elif not stripped:
            if chunk_by == "paragraph":
                blocks.append([])
        else:
            blocks[-1].append(re.sub(r"^(?:[-*+]|\d+\.)\s+", "", stripped))
    return [chunk for chunk in (" ".join(b) for b in blocks if b) if split_sentences(chunk)]


def words(text: str) -> list[str]:
    """Lower-case word tokens (apostrophes and inner hyphens kept)."""
    return [w.removesuffix("'s") for w in _WORD.findall(text.lower())]


class Vocabulary:
    """Content words of a text with plurals folded onto singulars the text itself uses."""

    def __init__(self, text: str) -> None:
        self.known = set(words(text))

    def fold(self, word: str) -> str:
        """'lenses' → 'lens' and 'rings' → 'ring' when the singular occurs in the text."""
        if word.endswith("s") and len(word) > 3:
            for candidate in (word[:-1], word[:-2]):
                if candidate in self.known and len(candidate) > 2:
                    return candidate
        return word

    def terms(self, text: str) -> list[str]:
        """Folded content words of ``text``, stopwords and one-letter words removed."""
        return [self.fold(w) for w in words(text) if w not in STOPWORDS and len(w) > 1]


def jaccard(a: set[str], b: set[str]) -> float:
    """|a ∩ b| / |a ∪ b| (0 for two empty sets)."""
    return len(a & b) / len(a | b) if a | b else 0.0


# --------------------------------------------------------------------------- data loading

_TEXT_KEYS = ("chunk", "text", "document", "content", "markdown")
_FILE_KEYS = ("document_file", "documentFile", "file", "path")


def _read_document(name: str) -> str:
    path = Path(name)
    if not path.is_absolute():
        path = HERE / path
    if not path.is_file():
        raise FileNotFoundError(f"document not found: {path}")
    return path.read_text(encoding="utf-8", errors="replace")


def load_text(data: Any, context: dict | None = None) -> tuple[str, int | None]:
    """The text to work on and its chunk index if ``data`` is one chunk of a larger document.

    Accepted: a string (text, or a ``.md``/``.txt`` file name in this folder); a mapping with
    ``chunk``/``text``/``document`` text or ``document_file``, optionally ``index``; a
    chunker's ``chunks`` (rejoined); nested under ``input`` or ``data``.
    """
    for source in (data, context):
        if isinstance(source, str):
            name = source.strip()
            if "\n" not in name and name.endswith((".md", ".txt")) and (HERE / name).is_file():
                return _read_document(name), None
            if name:
                return source, None
        if isinstance(source, dict):
            index = source.get("index", source.get("chunk_index"))
            index = index if isinstance(index, int) and not isinstance(index, bool) else None
            for key in _TEXT_KEYS:
                if isinstance(source.get(key), str) and source[key].strip():
                    return source[key], index
                if isinstance(source.get(key), dict):
                    inner = source[key]
                    if isinstance(inner.get("text"), str):
                        return inner["text"], inner.get("index", index)
            for key in _FILE_KEYS:
                if isinstance(source.get(key), str) and source[key].strip():
                    return _read_document(source[key].strip()), None
            if isinstance(source.get("chunks"), list):  # a chunker's output: rejoin the chunks
                parts = [c.get("text") if isinstance(c, dict) else c for c in source["chunks"]]
                texts = [p for p in parts if isinstance(p, str) and p.strip()]
                if texts:
                    return "\n\n".join(texts), None
            for key in ("input", "data"):
                if isinstance(source.get(key), (dict, str)):
                    return load_text(source[key])
    raise ValueError("no text found: pass text, {'chunk': <text>}, {'text': <text>} or "
                     "{'document_file': 'document.md'}")


def _option(context: dict | None, data: Any, key: str, default: Any) -> Any:
    """An option from the context, else from the data or its ``input``, else the default."""
    sources = [context, data]
    if isinstance(data, dict):
        sources.append(data.get("input"))
    for source in sources:
        if isinstance(source, dict) and key in source:
            return source[key]
    return default


def _chunk_by(context: dict | None, data: Any) -> str:
    value = str(_option(context, data, "chunkBy", "paragraph")).lower()
    return "section" if value.startswith("section") else "paragraph"


# --------------------------------------------------------------------------- summariser


@dataclass(frozen=True)
class ChunkSummary:
    """Extractive summary of one chunk."""

    index: int
    sentences: list[str]
    selected: list[int]
    total: int
    top_terms: list[str]
    confidence: float
    coverage: float
    separation: float

    def as_dict(self) -> dict[str, Any]:
        """JSON form; the confidence is repeated inside so reducers see it after transport."""
        return {"chunk_index": self.index, "sentences": self.sentences,
                "summary": " ".join(self.sentences), "selected": self.selected,
                "sentence_count": self.total, "top_terms": self.top_terms,
                "confidence": self.confidence}


def summarise_chunk(text: str, index: int, ratio: float = DEFAULT_RATIO,
                    vocabulary: Vocabulary | None = None) -> ChunkSummary:
    """Pick the ⌈n·ratio⌉ highest-scoring sentences, kept in document order.

    score(s) = Σ tf(w)/max tf over the distinct content words w of s, divided by
    √(number of content words of s), so long sentences do not win by length alone.
    confidence = min(0.95, 0.4 + 0.4·coverage + 0.2·separation): coverage = share of the
    chunk's term mass (Σ tf) whose terms appear in the chosen sentences; separation =
    (mean chosen score − mean other score) / mean chosen score (1 if all were chosen).
    """
    vocab = vocabulary or Vocabulary(text)
    sentences = split_sentences(text)
    terms = [vocab.terms(s) for s in sentences]
    tf = Counter(t for ts in terms for t in ts)
    if not sentences or not tf:
        return ChunkSummary(index, sentences[:1], [0] if sentences else [], len(sentences), [],
                            0.4, 0.0, 0.0)
    top = max(tf.values())
    scores = [sum(tf[t] / top for t in set(ts)) / math.sqrt(len(ts)) if ts else 0.0
              for ts in terms]
    k = max(1, math.ceil(len(sentences) * ratio))
    chosen = sorted(sorted(range(len(sentences)), key=lambda i: (-scores[i], i))[:k])
    covered = set().union(*(set(terms[i]) for i in chosen))
    coverage = sum(tf[t] for t in covered) / sum(tf.values())
    rest = [scores[i] for i in range(len(sentences)) if i not in chosen]
    mean_chosen = sum(scores[i] for i in chosen) / len(chosen)
    if not rest:
        separation = 1.0
    elif mean_chosen > 0:
        separation = max(0.0, (mean_chosen - sum(rest) / len(rest)) / mean_chosen)
    else:
        separation = 0.0
    confidence = round(min(CONFIDENCE_CAP, 0.4 + 0.4 * coverage + 0.2 * separation), 3)
    top_terms = [t for t, _ in sorted(tf.items(), key=lambda kv: (-kv[1], kv[0]))[:5]]
    return ChunkSummary(index, [sentences[i] for i in chosen], chosen, len(sentences), top_terms,
                        confidence, round(coverage, 4), round(separation, 4))


def chunker(task: str, data: Any, context: dict | None = None) -> dict[str, Any]:
    """Load the document and split it into chunks (context/data ``chunkBy``: 'paragraph' or
    'section'). The split is exact and deterministic: confidence 1.0 when the document has
    at least one chunk, 0.0 otherwise."""
    text, _ = load_text(data, context)
    chunk_by = _chunk_by(context, data)
    chunks = chunk_document(text, chunk_by)
    return {
        "value": {"chunkBy": chunk_by, "count": len(chunks),
                  "chunks": [{"index": i, "text": c} for i, c in enumerate(chunks)]},
        "confidence": 1.0 if chunks else 0.0,
        "reasoning": f"split by {chunk_by} into {len(chunks)} chunk(s)",
        "uncertainties": [] if chunks else ["the document has no prose"],
        "metadata": {"agent": "chunker", "task": task},
    }


def chunk_summarizer(task: str, data: Any, context: dict | None = None) -> dict[str, Any]:
    """Extractive summary of one chunk (see :func:`summarise_chunk` for score and confidence).

    Given a whole document instead of one chunk, it chunks it (``chunkBy``) and summarises
    every chunk; the value is then ``{"chunks": [...]}`` and the confidence the mean of the
    chunks' confidences. ``ratio`` (context) sets the share of sentences kept (default 1/3).
    """
    text, index = load_text(data, context)
    ratio = float(_option(context, data, "ratio", DEFAULT_RATIO))
    chunks = chunk_document(text, _chunk_by(context, data))
    if len(chunks) <= 1:
        summary = summarise_chunk(chunks[0] if chunks else text, index or 0, ratio)
        return {
            "value": summary.as_dict(),
            "confidence": summary.confidence,
            "reasoning": (f"kept {len(summary.sentences)} of {summary.total} sentence(s); they "
                          f"carry {summary.coverage:.0%} of the chunk's term mass, separation "
                          f"{summary.separation:.2f}"),
            "uncertainties": [] if summary.total > 1 else ["chunk has a single sentence"],
            "metadata": {"agent": "chunk-summarizer", "task": task, "coverage": summary.coverage,
                         "separation": summary.separation,
                         "formula": "min(0.95, 0.4 + 0.4*coverage + 0.2*separation)"},
        }
    vocab = Vocabulary(text)
    summaries = [summarise_chunk(c, i, ratio, vocab) for i, c in enumerate(chunks)]
    confidence = round(sum(s.confidence for s in summaries) / len(summaries), 3)
    return {
        "value": {"chunks": [s.as_dict() for s in summaries], "chunk_count": len(summaries)},
        "confidence": confidence,
        "reasoning": f"summarised {len(summaries)} chunks; mean chunk confidence {confidence:.3f}",
        "uncertainties": [],
        "metadata": {"agent": "chunk-summarizer", "task": task,
                     "formula": "mean over chunks of min(0.95, 0.4 + 0.4*coverage + "
                                "0.2*separation)"},
    }


# --------------------------------------------------------------------------- keywords


def extract_keywords(text: str, chunk_by: str = "paragraph",
                     limit: int = DEFAULT_MAX_KEYWORDS) -> tuple[list[dict[str, Any]], float]:
    """TF-IDF keywords with chunks as documents, plus repeated two-word phrases.

    term score = tf · ln(1 + N/df) (N chunks, df chunks containing the term); a bigram of
    adjacent content words seen at least twice scores count · mean idf · 2. Returns the top
    ``limit`` and the share of the total score mass they hold.
    """
    vocab = Vocabulary(text)
    chunks = chunk_document(text, chunk_by) or [text]
    chunk_terms = [vocab.terms(c) for c in chunks]
    tf = Counter(t for ts in chunk_terms for t in ts)
    df = Counter(t for ts in chunk_terms for t in set(ts))
    n = len(chunks)
    idf = {t: math.log(1 + n / df[t]) for t in tf}
    scores = {t: tf[t] * idf[t] for t in tf}
    bigrams: Counter[str] = Counter()
    for chunk in chunks:
        for sentence in split_sentences(chunk):
            tokens = words(sentence)
            for a, b in zip(tokens, tokens[1:]):
                if a not in STOPWORDS and b not in STOPWORDS and len(a) > 1 and len(b) > 1:
                    bigrams[f"{vocab.fold(a)} {vocab.fold(b)}"] += 1
    for phrase, count in bigrams.items():
        if count >= 2:
            a, b = phrase.split()
            scores[phrase] = count * (idf[a] + idf[b]) / 2 * 2
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    top = ranked[:limit]
    total = sum(scores.values())
    share = sum(s for _, s in top) / total if total else 0.0
    return ([{"term": t, "score": round(s, 4), "count": bigrams[t] if " " in t else tf[t]}
             for t, s in top], share)


def keyword_extractor(task: str, data: Any, context: dict | None = None) -> dict[str, Any]:
    """Keywords of a document or chunk (see :func:`extract_keywords`).

    confidence = min(0.95, 0.5 + 0.5·share), share = fraction of all term score mass held by
    the returned keywords: a text dominated by a few terms has clear keywords.
    """
    text, _ = load_text(data, context)
    limit = int(_option(context, data, "maxKeywords", DEFAULT_MAX_KEYWORDS))
    keywords, share = extract_keywords(text, _chunk_by(context, data), limit)
    confidence = round(min(CONFIDENCE_CAP, 0.5 + 0.5 * share), 3) if keywords else 0.0
    return {
        "value": {"keywords": keywords, "terms": [k["term"] for k in keywords]},
        "confidence": confidence,
        "reasoning": f"top {len(keywords)} terms hold {share:.0%} of the TF-IDF mass",
        "uncertainties": [] if keywords else ["no content words found"],
        "metadata": {"agent": "keyword-extractor", "task": task, "share": round(share, 4),
                     "formula": "min(0.95, 0.5 + 0.5*share)"},
    }


# --------------------------------------------------------------------------- reducer


@dataclass(frozen=True)
class Candidate:
    """A sentence proposed by a partial summary."""

    chunk: int
    position: int
    sentence: str
    confidence: float | None


def _collect_partials(obj: Any, wrapper: float | None = None, depth: int = 0) -> list[Candidate]:
    """Sentences from chunk summaries anywhere in ``obj`` (lists, ``chunks``, agent results)."""
    if depth > 8:
        return []
    if isinstance(obj, list):
        return [c for item in obj for c in _collect_partials(item, None, depth + 1)]
    if not isinstance(obj, dict):
        return []
    conf = obj.get("confidence")
    conf = float(conf) if isinstance(conf, (int, float)) and not isinstance(conf, bool) else wrapper
    if isinstance(obj.get("sentences"), list) and "chunk_index" in obj:
        selected = obj.get("selected") if isinstance(obj.get("selected"), list) else []
        return [Candidate(int(obj["chunk_index"]),
                          int(selected[i]) if i < len(selected) else i, s, conf)
                for i, s in enumerate(obj["sentences"]) if isinstance(s, str)]
    out = []
    for key, value in obj.items():
        if key in {"keywords", "terms"}:
            continue
        out.extend(_collect_partials(value, conf if key in {"value", "result"} else None,
                                     depth + 1))
    return out


def _collect_keywords(obj: Any, depth: int = 0) -> list[tuple[str, float]]:
    if depth > 8:
        return []
    if isinstance(obj, list):
        return [k for item in obj for k in _collect_keywords(item, depth + 1)]
    if not isinstance(obj, dict):
        return []
    if isinstance(obj.get("keywords"), list):
        found = []
        for k in obj["keywords"]:
            if isinstance(k, str):
                found.append((k, 1.0))
            elif isinstance(k, dict) and isinstance(k.get("term"), str):
                found.append((k["term"], float(k.get("score", 1.0))))
        return found
    return [k for key, v in obj.items() if key != "sentences"
            for k in _collect_keywords(v, depth + 1)]


def reducer(task: str, data: Any, context: dict | None = None) -> dict[str, Any]:
    """Editor: merge partial (chunk) summaries into one summary.

    1. collect candidate sentences from the partial summaries in ``data`` (if there are none
       but a document is given, summarise its chunks first);
    2. drop near-duplicates (Jaccard ≥ 0.6 on content words, the earlier one stays);
    3. score each by the keywords it contains (from ``data`` or extracted from the
       candidates), weight / √(content words);
    4. choose up to ``maxSentences`` (default 5): first the best sentence of each chunk in
       score order, then the best remaining; print them in document order.

    confidence = mean partial confidence × (0.6 + 0.2·chunk coverage + 0.2·keyword coverage):
    chunk coverage = share of chunks represented; keyword coverage = share of the top
    keywords present in the summary.
    """
    candidates = _collect_partials(data)
    mapped = False
    if not candidates:
        text, _ = load_text(data, context)
        vocab = Vocabulary(text)
        chunks = chunk_document(text, _chunk_by(context, data))
        ratio = float(_option(context, data, "ratio", DEFAULT_RATIO))
        candidates = [Candidate(s.index, pos, sentence, s.confidence)
                      for s in (summarise_chunk(c, i, ratio, vocab) for i, c in enumerate(chunks))
                      for pos, sentence in zip(s.selected, s.sentences)]
        mapped = True
    if not candidates:
        raise ValueError("reducer needs partial summaries or a document")
    candidates.sort(key=lambda c: (c.chunk, c.position))
    vocab = Vocabulary(" ".join(c.sentence for c in candidates))
    kept: list[tuple[Candidate, set[str]]] = []
    for cand in candidates:
        terms = set(vocab.terms(cand.sentence))
        if all(jaccard(terms, other) < DUPLICATE_JACCARD for _, other in kept):
            kept.append((cand, terms))
    keywords = _collect_keywords(data)
    if not keywords:
        extracted, _ = extract_keywords("\n\n".join(c.sentence for c in candidates))
        keywords = [(k["term"], k["score"]) for k in extracted]
    top_weight = max((w for _, w in keywords), default=1.0) or 1.0
    weights = {tuple(vocab.fold(w) for w in words(term)): w / top_weight for term, w in keywords}

    def score(terms: set[str]) -> float:
        hit = sum(w for key, w in weights.items() if set(key) <= terms)
        return hit / math.sqrt(len(terms)) if terms else 0.0

    scored = sorted(((score(t), c, t) for c, t in kept), key=lambda x: (-x[0], x[1].chunk,
                                                                         x[1].position))
    limit = int(_option(context, data, "maxSentences", DEFAULT_MAX_SENTENCES))
    chosen: list[Candidate] = []
    for _, cand, _ in scored:  # first pass: one sentence per chunk, best chunks first
        if len(chosen) < limit and all(c.chunk != cand.chunk for c in chosen):
            chosen.append(cand)
    for _, cand, _ in scored:
        if len(chosen) < limit and cand not in chosen:
            chosen.append(cand)
    chosen.sort(key=lambda c: (c.chunk, c.position))
    chunk_ids = {c.chunk for c in candidates}
    chunk_coverage = len({c.chunk for c in chosen}) / len(chunk_ids)
    summary_terms = set().union(*(set(vocab.terms(c.sentence)) for c in chosen))
    top_keys = [key for key, _ in sorted(weights.items(), key=lambda kv: -kv[1])[:10]]
    keyword_coverage = (sum(1 for key in top_keys if set(key) <= summary_terms) / len(top_keys)
                        if top_keys else 0.0)
    known = [c.confidence for c in candidates if c.confidence is not None]
    partial = sum(known) / len(known) if known else 0.7
    confidence = round(partial * (0.6 + 0.2 * chunk_coverage + 0.2 * keyword_coverage), 3)
    return {
        "value": {"summary": " ".join(c.sentence for c in chosen),
                  "sentences": [c.sentence for c in chosen],
                  "chunks_covered": sorted({c.chunk for c in chosen}),
                  "keywords": [" ".join(k) for k in top_keys],
                  "dropped_duplicates": len(candidates) - len(kept)},
        "confidence": confidence,
        "reasoning": (f"{len(candidates)} candidate sentence(s) from {len(chunk_ids)} chunk(s), "
                      f"{len(candidates) - len(kept)} near-duplicate(s) dropped, {len(chosen)} "
                      f"kept; chunk coverage {chunk_coverage:.2f}, keyword coverage "
                      f"{keyword_coverage:.2f}, mean partial confidence {partial:.3f}."),
        "uncertainties": ([] if known else ["partial summaries carried no confidence; assumed 0.7"])
                         + ([f"{len(chunk_ids) - len({c.chunk for c in chosen})} chunk(s) not "
                             "represented"] if chunk_coverage < 1 else []),
        "metadata": {"agent": "reducer", "task": task, "mapped_here": mapped,
                     "chunk_coverage": round(chunk_coverage, 4),
                     "keyword_coverage": round(keyword_coverage, 4),
                     "formula": "mean_partial * (0.6 + 0.2*chunk_coverage + "
                                "0.2*keyword_coverage)"},
    }
