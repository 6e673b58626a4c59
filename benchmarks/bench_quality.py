"""Search quality: recall@10 and MRR of vector, keyword and hybrid search.

The corpus is one a fresh machine has without downloads: the docstrings of the Python
standard library, read from its ``.py`` sources with :mod:`ast` (never imported). Each
public module, class, function and method with a docstring of 40 characters or more
is a document (source ``stdlib/<module>.<qualname>``, title the qualified name, text
the docstring), ingested through ``SemanticCore.ingest`` into a SQLite file, so it is
chunked, embedded and keyword-indexed as any document is. Identical docstrings are
kept once. Files and documents are picked by a seeded hash, so every run and machine
with the same Python sees the same corpus and queries.

Two kinds of queries, with ground truth built mechanically:

* **identifiers**: a token that looks like code (``snake_case``, ``camelCase``, a
  digit inside, ``ALL_CAPS``, or a dotted name) found in one to three documents (title
  or text, case-sensitive, whole token). The query is the token alone; the relevant
  documents are the ones that hold it.
* **paraphrases**: a docstring's summary line (6 to 25 words, unique in the corpus)
  said in other words: function words dropped, words swapped for synonyms from a small
  hand-written table, the two halves of the sentence swapped. The relevant document is
  that docstring's.

Metrics over the distinct documents of the top 10 chunks: recall@10 (the share of the
relevant documents found) and MRR (1 / the rank of the first relevant one, 0 when
none is in the top 10), averaged per query kind and mode.

Vectors: the emulator's lexical vectors (:class:`asemantic.testing.LexicalEmbedder`,
the features the Gemini emulator uses: hashed words, no meaning) and, when installed,
a small real embedding model: WordLlama (``pip install wordllama``: its 256-dimension
``l2_supercat`` token embeddings and tokenizer ship inside the wheel, 16 MB, and run
on CPU offline; they are loaded from the package directory, never downloaded). It is
a benchmark extra only, never a dependency of asemantic: without it the benchmark
says so and measures the lexical vectors alone. Models that fetch their weights from
a hub at run time (sentence-transformers, fastembed, model2vec's ``from_pretrained``)
cannot run here.

The rows compare hybrid with the better of vector and keyword on each query kind
(target: at least as good). ``--sweep`` also measures a few fusion weightings.

``python -m benchmarks.bench_quality`` runs it (``--quick``: a small corpus, fewer
queries).
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import hashlib
import re
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from asemantic import CoreConfig, EmbeddingSpace, SemanticCore
from asemantic.domain.fusion import Fusion
from asemantic.ports import Embedder, EmbedRequest
from asemantic.testing import LexicalEmbedder
from benchmarks._common import Row, quiet, row

__all__ = ["Document", "Query", "corpus", "identifier_queries", "paraphrase_queries", "run"]

_K = 10
MODES = ("vector", "keyword", "hybrid")
KINDS = ("identifiers", "paraphrases")
_SKIP_PARTS = frozenset(
    {
        "test",
        "tests",
        "idlelib",
        "lib2to3",
        "turtledemo",
        "ensurepip",
        "site-packages",
        "__pycache__",
    }
)
_MIN_DOC = 40
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_WORD = re.compile(r"[A-Za-z]+")


@dataclass(frozen=True, slots=True)
class Document:
    """One docstring of the corpus: ``text`` is the qualified name, a blank line and
    the docstring (``body``), as a reference page starts with what it describes."""

    source: str
    title: str
    body: str

    @property
    def text(self) -> str:
        return f"{self.title}\n\n{self.body}"


@dataclass(frozen=True, slots=True)
class Query:
    """A query, its kind and the sources of the documents that are relevant to it."""

    kind: str
    text: str
    relevant: frozenset[str]


# --- the corpus ------------------------------------------------------------------------


def _rank(text: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{text}".encode()).hexdigest()


def _modules(root: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if any(p in _SKIP_PARTS or p.startswith(("_", ".")) for p in parts[:-1]):
            continue
        if parts[-1].startswith("_") and parts[-1] != "__init__.py":
            continue
        names = list(parts[:-1]) if parts[-1] == "__init__.py" else [*parts[:-1], path.stem]
        if names:
            yield ".".join(names), path


def _docstrings(module: str, path: Path) -> Iterator[Document]:
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError):
        return
    found: list[tuple[str, ast.AST]] = [(module, tree)]
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if node.name.startswith("_"):
                continue
            found.append((f"{module}.{node.name}", node))
            if isinstance(node, ast.ClassDef):
                found.extend(
                    (f"{module}.{node.name}.{item.name}", item)
                    for item in node.body
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                    and not item.name.startswith("_")
                )
    for name, owner in found:
        assert isinstance(owner, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        text = ast.get_docstring(owner, clean=True)
        if text and len(text.strip()) >= _MIN_DOC and "\x00" not in text:
            yield Document(source=f"stdlib/{name}", title=name, body=text.strip())


def corpus(limit: int, *, seed: int = 13, root: Path | None = None) -> list[Document]:
    """At most ``limit`` documents, from files in a seeded order (the same every run)."""
    base = root or Path(sysconfig.get_paths()["stdlib"])
    files = sorted(_modules(base), key=lambda item: _rank(item[0], seed))
    seen_texts: set[str] = set()
    seen_sources: set[str] = set()
    out: list[Document] = []
    for module, path in files:
        for doc in _docstrings(module, path):
            if doc.body in seen_texts or doc.source in seen_sources:
                continue
            seen_texts.add(doc.body)
            seen_sources.add(doc.source)
            out.append(doc)
        if len(out) >= limit:
            break
    return out[:limit]


# --- identifier queries ----------------------------------------------------------------


def _looks_like_code(token: str) -> bool:
    if len(token) < 4 or token.startswith("_") or token.endswith("_"):
        return False
    if "." in token:
        return all(part and not part.startswith("_") for part in token.split("."))
    if "_" in token:
        return any(c.isalpha() for c in token)
    if re.search(r"[a-z][A-Z]", token) or re.search(r"[A-Za-z][0-9]", token):
        return True
    return token.isupper() and len(token) >= 5


def _tokens(text: str) -> set[str]:
    """The code-like tokens of ``text``: dotted names whole and by parts."""
    out: set[str] = set()
    for token in _TOKEN.findall(text):
        out.add(token)
        out.update(token.split("."))
    return out


def identifier_queries(docs: Sequence[Document], count: int, *, seed: int = 13) -> list[Query]:
    """``count`` identifier queries: code-like tokens that docstrings mention and 1-3
    documents hold (in the docstring, or in the name of what the page describes)."""
    holders: dict[str, set[str]] = {}
    for doc in docs:
        for token in _tokens(doc.text):
            holders.setdefault(token, set()).add(doc.source)
    mentioned = {t for doc in docs for t in _TOKEN.findall(doc.body) if _looks_like_code(t)}
    rare = sorted((t for t in mentioned if 1 <= len(holders[t]) <= 3), key=lambda t: _rank(t, seed))
    return [Query("identifiers", t, frozenset(holders[t])) for t in rare[:count]]


# --- paraphrase queries ----------------------------------------------------------------

_FUNCTION_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "to",
        "is",
        "are",
        "be",
        "been",
        "this",
        "that",
        "these",
        "those",
        "it",
        "its",
        "for",
        "in",
        "on",
        "by",
        "with",
        "and",
        "or",
        "as",
        "if",
        "from",
        "which",
        "any",
        "all",
        "into",
        "at",
        "also",
    ]
)
SYNONYMS = {
    "return": "give back",
    "returns": "gives back",
    "create": "make",
    "creates": "makes",
    "remove": "delete",
    "removes": "deletes",
    "get": "fetch",
    "gets": "fetches",
    "set": "assign",
    "sets": "assigns",
    "object": "instance",
    "objects": "instances",
    "string": "text",
    "strings": "texts",
    "list": "sequence",
    "number": "count",
    "specified": "given",
    "new": "fresh",
    "current": "present",
    "value": "item",
    "values": "items",
    "check": "test",
    "checks": "tests",
    "whether": "if",
    "true": "yes",
    "false": "no",
    "file": "document",
    "files": "documents",
    "directory": "folder",
    "directories": "folders",
    "read": "load",
    "reads": "loads",
    "write": "store",
    "writes": "stores",
    "start": "begin",
    "starts": "begins",
    "stop": "halt",
    "close": "shut",
    "closes": "shuts",
    "open": "launch",
    "opens": "launches",
    "error": "failure",
    "errors": "failures",
    "raise": "throw",
    "raises": "throws",
    "name": "label",
    "names": "labels",
    "convert": "transform",
    "converts": "transforms",
    "given": "supplied",
    "default": "standard",
    "data": "content",
    "method": "routine",
    "function": "routine",
    "class": "type",
    "instance": "object",
    "called": "invoked",
    "call": "invoke",
    "used": "employed",
    "use": "employ",
    "add": "append",
    "adds": "appends",
    "find": "locate",
    "finds": "locates",
    "size": "length",
    "empty": "blank",
    "first": "initial",
    "last": "final",
    "all": "every",
    "each": "every",
}


def reword(sentence: str) -> str:
    """``sentence`` in other words: function words dropped, synonyms, halves swapped."""
    words = [w.lower() for w in _WORD.findall(sentence)]
    kept = [SYNONYMS.get(w, w) for w in words if w not in _FUNCTION_WORDS]
    half = len(kept) // 2
    return " ".join(kept[half:] + kept[:half])


def _summary(doc: Document) -> str:
    return doc.body.split("\n\n", 1)[0].replace("\n", " ").strip()


def paraphrase_queries(docs: Sequence[Document], count: int, *, seed: int = 13) -> list[Query]:
    """``count`` reworded summary lines (6-25 words, unique in the corpus)."""
    summaries = Counter(_summary(doc) for doc in docs)
    chosen: list[Query] = []
    for doc in sorted(docs, key=lambda d: _rank(d.source, seed)):
        line = _summary(doc)
        words = _WORD.findall(line)
        if summaries[line] != 1 or not 6 <= len(words) <= 25:
            continue
        text = reword(line)
        if text and text != line.lower():
            chosen.append(Query("paraphrases", text, frozenset({doc.source})))
        if len(chosen) == count:
            break
    return chosen


# --- a real model, when installed --------------------------------------------------------


class WordLlamaEmbedder:
    """WordLlama's ``l2_supercat`` 256-d embeddings, loaded from the installed package
    (weights and tokenizer ship in the wheel): a benchmark extra, never a dependency."""

    def __init__(self) -> None:
        import wordllama  # type: ignore[import-untyped,import-not-found,unused-ignore]
        from safetensors import safe_open  # type: ignore[import-untyped,import-not-found,unused-ignore]
        from tokenizers import Tokenizer  # type: ignore[import-untyped,import-not-found,unused-ignore]
        from wordllama.inference import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
            WordLlamaInference,
        )

        root = Path(wordllama.__file__).parent
        tokenizer = Tokenizer.from_file(
            str(root / "tokenizers" / "l2_supercat_tokenizer_config.json")
        )
        with safe_open(
            str(root / "weights" / "l2_supercat_256.safetensors"), framework="np", device="cpu"
        ) as weights:
            matrix = weights.get_tensor("embedding.weight")
        self._model: Any = WordLlamaInference(matrix, tokenizer)
        self._space = EmbeddingSpace(model="wordllama-l2-supercat", dimensions=256)

    @property
    def space(self) -> EmbeddingSpace:
        return self._space

    def _vectors(self, texts: Sequence[str]) -> list[bytes]:
        rows = np.asarray(self._model.embed(list(texts), norm=True), dtype="<f4")
        return [r.tobytes() for r in rows]

    async def embed_documents(self, requests: Sequence[EmbedRequest]) -> list[bytes]:
        texts = [f"{r.title}\n{r.text}" if r.title else r.text for r in requests]
        return self._vectors(texts)

    async def embed_query(self, text: str) -> bytes:
        return self._vectors([text])[0]

    async def aclose(self) -> None:
        return None


def embedders() -> tuple[dict[str, Embedder], str | None]:
    """The embedders to measure, and why the real model is left out (None when not)."""
    found: dict[str, Embedder] = {
        "lexical": LexicalEmbedder(EmbeddingSpace(model="lexical-hash-v1", dimensions=768))
    }
    try:
        found["wordllama"] = WordLlamaEmbedder()
    except ImportError:
        return found, "wordllama is not installed (pip install wordllama): lexical vectors only"
    except (OSError, KeyError, ValueError) as exc:
        return found, f"wordllama could not load its packaged weights ({exc}): lexical only"
    return found, None


# --- measuring -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Score:
    """Mean recall@10 and MRR of ``queries`` queries."""

    recall: float
    mrr: float
    queries: int


def _score(ranked: Sequence[str], relevant: frozenset[str]) -> tuple[float, float]:
    top = list(dict.fromkeys(ranked))[:_K]
    found = sum(1 for s in top if s in relevant)
    first = next((i for i, s in enumerate(top, 1) if s in relevant), None)
    return found / min(len(relevant), _K), (1.0 / first if first else 0.0)


async def measure(
    embedder: Embedder,
    docs: Sequence[Document],
    queries: Sequence[Query],
    directory: Path,
    *,
    fusions: Sequence[Fusion] = (),
) -> tuple[dict[tuple[str, str], Score], float]:
    """Scores by (mode, kind) (and ``("hybrid V/K c=C", kind)`` per extra fusion: weights
    and constant), and the seconds ingestion took."""
    path = directory / f"quality-{embedder.space.model}.db"
    async with SemanticCore.open(path, embedder=embedder, config=CoreConfig()) as core:
        start = time.perf_counter()
        for doc in docs:
            await core.ingest(doc.text, source=doc.source, title=doc.title, kind="plain")
        ingest_s = time.perf_counter() - start
        runs: list[tuple[str, str, Fusion | None]] = [(m, m, None) for m in MODES]
        runs += [(_label(f), "hybrid", f) for f in fusions]
        sums: dict[tuple[str, str], list[float]] = {}
        for label, mode, fusion in runs:
            for query in queries:
                hits = await core.search(query.text, k=_K, mode=mode, fusion=fusion)
                recall, mrr = _score([h.source for h in hits], query.relevant)
                total = sums.setdefault((label, query.kind), [0.0, 0.0, 0.0])
                total[0] += recall
                total[1] += mrr
                total[2] += 1
    scores = {key: Score(r / n, m / n, int(n)) for key, (r, m, n) in sums.items()}
    return scores, ingest_s


def _sizes(quick: bool) -> tuple[int, int]:
    """Documents, and queries of each kind."""
    return (300, 25) if quick else (4000, 200)


def _rows(name: str, scores: dict[tuple[str, str], Score]) -> list[Row]:
    rows: list[Row] = []
    for kind in KINDS:
        if (MODES[0], kind) not in scores:
            continue
        vector, keyword, hybrid = (scores[(m, kind)] for m in MODES)
        n = hybrid.queries
        for metric in ("recall", "mrr"):
            label = "recall@10" if metric == "recall" else "MRR"
            v, kw, hy = (getattr(s, metric) for s in (vector, keyword, hybrid))
            best, which = (v, "vector") if v >= kw else (kw, "keyword")
            rows.append(
                row(
                    f"quality {label}, {kind} ({n}), hybrid, {name} vectors",
                    hy,
                    "",
                    baseline=f"the better single mode ({which})",
                    baseline_figure=best,
                    target=">= the better of vector and keyword",
                    met=hy >= best - 1e-9,
                )
            )
            rows.append(
                row(
                    f"quality {label}, {kind} ({n}), vector, {name} vectors",
                    v,
                    "",
                    baseline="keyword (BM25)",
                    baseline_figure=kw,
                )
            )
    return rows


def table(name: str, scores: dict[tuple[str, str], Score]) -> str:
    """The scores of one embedder as a plain table."""
    lines = [f"{name} vectors: mode | kind | queries | recall@10 | MRR"]
    for (mode, kind), s in sorted(scores.items(), key=lambda item: (item[0][1], item[0][0])):
        lines.append(f"  {mode:<20} {kind:<12} {s.queries:>5}  {s.recall:9.3f}  {s.mrr:6.3f}")
    return "\n".join(lines)


def _label(fusion: Fusion) -> str:
    name = f"hybrid {fusion.vector_weight:g}/{fusion.keyword_weight:g} c={fusion.constant:g}"
    return name + (" ids fused" if fusion.identifiers == "fuse" else "")


SWEEP = (
    Fusion(identifiers="fuse"),
    *(
        Fusion(vector_weight=1.0, keyword_weight=weight, constant=constant)
        for constant in (60.0, 20.0, 10.0)
        for weight in (1.0, 2.0, 3.0, 5.0, 10.0)
        if (weight, constant) != (1.0, 60.0)
    ),
)
"""The fusions ``--sweep`` tries besides the default (vector weight 1): the default
with identifier queries fused like any other, then other weights and constants."""


def run(quick: bool, *, sweep: bool = False, show: bool = False) -> list[Row]:
    """Rows for every embedder available (see the module docstring)."""
    n_docs, n_queries = _sizes(quick)
    docs = corpus(n_docs)
    queries = identifier_queries(docs, n_queries) + paraphrase_queries(docs, n_queries)
    found, missing = embedders()
    if missing:
        print(f"bench_quality: {missing}", file=sys.stderr)
    rows: list[Row] = []
    with quiet(), tempfile.TemporaryDirectory(prefix="asemantic-quality-") as tmp:
        for name, embedder in found.items():
            scores, ingest_s = asyncio.run(
                measure(embedder, docs, queries, Path(tmp), fusions=SWEEP if sweep else ())
            )
            if show:
                print(f"{len(docs)} documents ingested in {ingest_s:.1f} s")
                print(table(name, scores), flush=True)
            rows.extend(_rows(name, scores))
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="search quality benchmark")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sweep", action="store_true", help="also try other fusion weights")
    args = parser.parse_args(argv)
    from benchmarks._common import print_rows

    print_rows(run(args.quick, sweep=args.sweep, show=True))


if __name__ == "__main__":
    main()
