"""What the simulated model says: deterministic answers, judge and relevance replies, scripted replies, embeddings."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
from typing import Any

import numpy as np

from mini.testing.sim.core import SimState

WORD = re.compile(r"\w+")
_SOURCE_BLOCK = re.compile(r"^\[(\d+)\]\s*(?:\(source: [^\n]*?\)\s)?(.*)$", re.DOTALL)
_REWRITE_COUNT = re.compile(r"Return exactly (\d+) search queries")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


@functools.lru_cache(maxsize=65536)
def _token_slot(token: str, dim: int) -> tuple[int, float]:
    # blake2b, not hash(): Python's str hash is salted per process, vectors must match across runs.
    value = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
    return value % dim, -1.0 if value >> 63 else 1.0


def embed_text(text: str, dim: int) -> np.ndarray:
    """Hashed bag-of-words vector, L2-normalised; texts sharing words get a high cosine similarity."""
    vector = np.zeros(dim, dtype=np.float32)
    for token in WORD.findall(text.lower()):
        index, sign = _token_slot(token, dim)
        vector[index] += sign
    norm = float(np.linalg.norm(vector))
    if norm == 0.0:  # empty text (or tokens that cancel out): a valid unit vector instead of NaNs
        vector[0] = 1.0
        return vector
    return vector / norm


def text_of(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


def _first_sentence(text: str) -> str:
    return _SENTENCE_END.split(text.strip(), maxsplit=1)[0]


_NONCOMMITTAL = re.compile(r"\b(?:do not know|don't know|not sure|could not find|cannot answer)\b", re.I)


def _claim_words(text: str) -> set[str]:
    words = {w for w in WORD.findall(text.lower()) if len(w) >= 4}
    return words or set(WORD.findall(text.lower()))


def _supported(claim: str, text: str) -> bool:
    """Word overlap stands in for a judge's reading: at least half of the claim's longer words are in `text`."""
    words = _claim_words(claim)
    return bool(words) and len(words & set(WORD.findall(text.lower()))) * 2 >= len(words)


def judge_reply(payload: dict[str, Any]) -> str | None:
    """The deterministic JSON reply to a judge prompt of `mini.eval.judge` (a user message that is a JSON object
    with a "task"), or None for any other object. Claims are checked by word overlap (`_supported`)."""
    task, context = payload.get("task"), str(payload.get("context", ""))
    if task == "statements":
        answer = str(payload.get("answer", "")).strip()
        return json.dumps({"statements": [s for s in _SENTENCE_END.split(answer) if s.strip()]})
    if task == "verdicts":
        verdicts = [
            {"statement": s, "reason": "word overlap (simulated)", "verdict": int(_supported(s, context))}
            for s in payload.get("statements") or []
        ]
        return json.dumps({"verdicts": verdicts})
    if task == "questions":
        answer = str(payload.get("answer", "")).strip()
        sentences = [s.rstrip(".!?") for s in _SENTENCE_END.split(answer) if s.strip()] or [answer]
        noncommittal = int(bool(_NONCOMMITTAL.search(answer)))
        n = payload.get("n")
        questions = [
            {
                "question": f"What does the text say about {sentences[i % len(sentences)]}?",
                "noncommittal": noncommittal,
            }
            for i in range(n if isinstance(n, int) and 0 < n <= 10 else 1)
        ]
        return json.dumps({"questions": questions})
    if task == "usefulness":
        useful = _supported(str(payload.get("reference", "")), context)
        return json.dumps({"reason": "word overlap (simulated)", "verdict": int(useful)})
    if task == "attribution":
        classes = [
            {"sentence": s, "reason": "word overlap (simulated)", "attributed": int(_supported(s, context))}
            for s in payload.get("sentences") or []
        ]
        return json.dumps({"classifications": classes})
    return None


def _judge_payload(user: str) -> dict[str, Any] | None:
    if not user.lstrip().startswith("{"):
        return None
    try:
        payload = json.loads(user)
    except ValueError:
        return None
    return payload if isinstance(payload, dict) and "task" in payload else None


def relevance_score(prompt: str) -> int:
    """0-10 for a "Query: ...\n\nPassage:\n..." scoring prompt: the share of the query's longer words in the
    passage, so rerankers get a deterministic order that follows word overlap."""
    query, _, passage = prompt.partition("Passage:")
    words = _claim_words(query.replace("Query:", ""))
    found = words & set(WORD.findall(passage.lower()))
    return round(10 * len(found) / len(words)) if words else 0


def answer_for(messages: list[dict[str, Any]]) -> str:
    """The deterministic reply to a conversation: judge a claim, score a passage, cite sources, rewrite queries,
    or echo."""
    user = next((text_of(m) for m in reversed(messages) if m.get("role") == "user"), "")
    payload = _judge_payload(user)
    judged = judge_reply(payload) if payload is not None else None
    if judged is not None:
        return judged
    system = "\n".join(text_of(m) for m in messages if m.get("role") in ("system", "developer"))
    lines = user.split("\n")
    if "Sources:" in lines:
        sources: dict[int, str] = {}
        for block in "\n".join(lines[lines.index("Sources:") + 1 :]).split("\n\n"):
            match = _SOURCE_BLOCK.match(block.strip())
            if match:
                sources.setdefault(int(match.group(1)), match.group(2))
        if 1 in sources:
            parts = [f"{_first_sentence(sources[n])} [{n}]" for n in (1, 2) if n in sources]
            return " ".join(parts)
    if "how relevant a passage is" in system:  # mini.rerankers.llm's scoring prompt
        return str(relevance_score(user))
    if "standalone question" in system and "Last message:" in user:  # mini.conversation's condense prompt
        # The last message as written: already standalone in the default conversations; tests that need
        # a resolved follow-up script the reply (`sim.script`).
        last = user.rsplit("Last message:", 1)[1]
        return last.split("\n\nStandalone question:", 1)[0].strip()
    count = _REWRITE_COUNT.search(system)
    if count and "alternative search queries" in system:
        question = user.strip()
        return "\n".join(f"{question} (variant {i})" for i in range(1, int(count.group(1)) + 1))
    return f"Simulated answer: {user[:200]}"


def split_pieces(content: str) -> list[str]:
    # Each piece keeps its leading whitespace so the streamed deltas concatenate to the exact content.
    return re.findall(r"\s*\S+|\s+$", content)


@dataclasses.dataclass(frozen=True)
class Reply:
    """What the simulated model says, in no particular wire format."""

    content: str
    tool_calls: list[dict[str, Any]]  # {"id", "name", "arguments": dict}
    prompt_tokens: int
    completion_tokens: int
    refusal: str | None = None  # the model declines: each wire says so in its own shape

    @property
    def pieces(self) -> list[str]:
        return split_pieces(self.content)


def fit_schema(schema: Any, text: str, defs: dict[str, Any] | None = None) -> Any:
    """A value that validates against a JSON Schema (the subset pydantic emits), strings saying `text`."""
    if not isinstance(schema, dict):
        return text
    defs = defs if defs is not None else schema.get("$defs") or schema.get("definitions") or {}
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return fit_schema(defs.get(ref.rsplit("/", 1)[-1], {}), text, defs)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(key) or () if not (isinstance(o, dict) and o.get("type") == "null")]
        if options:
            return fit_schema(options[0], text, defs)
    kind = schema.get("type")
    kind = next((k for k in kind if k != "null"), "string") if isinstance(kind, list) else kind
    if kind == "object" or "properties" in schema:
        return {name: fit_schema(sub, text, defs) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [fit_schema(schema.get("items") or {}, text, defs)]
    return {"integer": 1, "number": 1.0, "boolean": True, "null": None}.get(str(kind), text)


def response_schema(body: dict[str, Any]) -> Any:
    """The JSON Schema an OpenAI `response_format` asks the answer to fit ({} for plain json_object)."""
    fmt = body.get("response_format")
    if not isinstance(fmt, dict) or fmt.get("type") not in ("json_schema", "json_object"):
        return None
    return (fmt.get("json_schema") or {}).get("schema") or {}


def make_reply(state: SimState, messages: list[dict[str, Any]], schema: Any = None) -> Reply:
    """The next scripted reply, else the deterministic answer (as JSON fitting `schema`, when the request
    asked for structured output); `messages` in OpenAI shape (text content)."""
    if state.scripts:
        scripted = state.scripts.pop(0)
    elif schema is not None:
        scripted = {"content": json.dumps(fit_schema(schema, answer_for(messages)))}
    else:
        scripted = {"content": answer_for(messages)}
    calls = []
    for i, call in enumerate(scripted.get("tool_calls") or []):
        arguments = call.get("arguments", {})
        if isinstance(arguments, str):
            arguments = json.loads(arguments or "{}")
        calls.append({"id": f"call_sim_{next(state.ids)}_{i}", "name": call["name"], "arguments": arguments})
    content = scripted.get("content") or ""
    # Whitespace tokens: crude, but deterministic and good enough for usage and token_ms latency.
    completion = len(content.split()) + sum(len(json.dumps(c["arguments"]).split()) for c in calls)
    prompt = sum(len(text_of(m).split()) for m in messages)
    refusal = scripted.get("refusal")
    return Reply(content, calls, prompt, completion, str(refusal) if refusal else None)
