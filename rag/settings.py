"""All tunables in one place: defaults, overridden by a TOML file, overridden by RAG_* env vars."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from rag.types import AbstainedBy, AnswerStyle

CONFIG_ENV = "RAG_CONFIG"
DEFAULT_CONFIG_FILE = "rag.toml"


def _config_file() -> Path | None:
    """RAG_CONFIG names the file explicitly (and must exist); else ./rag.toml if present."""
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise FileNotFoundError(f"{CONFIG_ENV}={explicit} does not name a readable file")
        return path
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_", extra="forbid", validate_default=True)

    # Where things live
    index_dir: Path = Path("index")
    default_corpus: Path = Path("seeds")
    cache_dir: Path = Field(
        default_factory=lambda: Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rag",
        description="Prepared (converted) models; outside the repo so clones share them.",
    )

    # Models: a name from rag.models.REGISTRY, a local HF folder, or a .gguf path
    embedding_model: str = "all-minilm-l6-v2"
    generator_model: str = "qwen2.5-coder-1.5b"
    embedding_dtype: Literal["auto", "float32", "bfloat16"] = Field(
        default="auto",
        description="auto: bfloat16 where the CPU has avx512_bf16 or AMX (~2.7x faster there), else float32 "
        "(bf16 is ~3.5x slower than float32 on CPUs without it; rag bench).",
    )
    threads: int = Field(default=0, ge=0, description="Torch threads; 0 = all cores.")

    # Ingestion
    max_file_mb: float = Field(default=20.0, gt=0)

    # Chunking (characters; boundaries snap to sentences)
    chunk_size: int = Field(default=700, ge=100)
    chunk_overlap: int = Field(default=150, ge=0)

    # Retrieval
    top_k: int = Field(default=4, ge=1, le=20)
    excerpt_chars: int = Field(
        default=560,
        ge=0,
        description="Each passage is cut to its sentences closest to the question, at most this many characters: "
        "a shorter prompt answers sooner (560: first token -22%, eval unchanged; less loses quality). 0 = whole.",
    )
    candidate_k: int = Field(default=20, ge=1)
    bm25_weight: float = Field(default=0.4, ge=0, le=1, description="Share of BM25 in the fused score.")
    bm25_k1: float = Field(default=0.9, gt=0, description="BM25 term-frequency saturation (Anserini's default).")
    bm25_b: float = Field(default=0.4, ge=0, le=1, description="BM25 length normalisation (Anserini's default).")
    embed_batch_size: int = Field(default=32, ge=1)
    ivf_min_chunks: int = Field(
        default=50_000, ge=1, description="From this many chunks on, dense search is IVF instead of exact (rag bench)."
    )
    ivf_nprobe: int = Field(default=32, ge=1, description="IVF lists searched per query: recall against speed.")

    # Index store
    store: Literal["local", "postgres"] = Field(
        default="local",
        description="local: files under index_dir (one machine). postgres: PostgreSQL with pgvector at "
        "database_url, shared by every app replica.",
    )
    database_url: SecretStr | None = Field(
        default=None, description="postgresql://user:password@host:port/dbname (a libpq URL); for store = postgres."
    )
    database_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Bound on connecting to the database and on each read of a question (statement_timeout); "
        "past it the caller gets a 503 naming the database.",
    )
    hnsw_ef_search: int = Field(
        default=400,
        ge=1,
        description="pgvector HNSW candidates per query: at 1M vectors 400 gives recall@10 0.975, p95 26 ms; "
        "200: 0.950, 16 ms; 100: 0.890, 11 ms (docs/BENCHMARKS-TEAM.md).",
    )

    # Generation
    generator_engine: Literal["auto", "transformers", "llama.cpp", "openai"] = Field(
        default="auto",
        description="auto: the faster installed engine on this CPU, measured once (rag prepare) and recorded "
        "in cache_dir with the CPU and library versions; re-measured when either changes. openai: a model "
        "server speaking the OpenAI API at engine_url (vLLM, llama.cpp's server, TGI, Ollama).",
    )
    engine_url: str | None = Field(default=None, description="The model server's API, e.g. http://127.0.0.1:8080/v1.")
    engine_model: str = Field(default="qwen2.5-coder-1.5b", description="The model name the server knows.")
    engine_api_key: SecretStr | None = Field(
        default=None, description="Sent as a Bearer token, if the server wants one."
    )
    engine_connect_timeout_s: float = Field(
        default=5.0, gt=0, description="Bound on connecting to the model server (openai engine)."
    )
    engine_read_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Bound on the model server's first token and on the wait between two tokens (openai engine); "
        "a hung server gives the caller a 503 within it and frees its generation slot.",
    )
    max_concurrent_generations: int = Field(
        default=4,
        ge=1,
        description="Answers sent to the model server at once (openai engine); in-process engines run one at a time.",
    )
    generator_dtype: Literal["auto", "bfloat16", "float32"] = Field(
        default="auto",
        description="The transformers engine's dtype for reading the prompt. auto: bfloat16 where the CPU has "
        "avx512_bf16 or AMX, else float32 (torch's bf16 matrix multiply is ~6x slower there; rag bench).",
    )
    max_new_tokens: int = Field(default=96, ge=8)
    long_answer_tokens: int = Field(
        default=192, ge=8, description="New tokens for a comparison or a list, which name every side or item."
    )
    answer_style: AnswerStyle = Field(
        default="sentence",
        description="sentence: cited sentences for people; short: only the exact phrase that answers (benchmarks).",
    )
    generator_quantization: Literal["none", "int8", "int4"] = Field(
        default="int4", description="Weights read while decoding; int4 decodes ~2.5x faster than bf16 (rag bench)."
    )
    prompt_lookup_tokens: int | None = Field(
        default=None,
        ge=0,
        le=20,
        description="Draft tokens copied from the prompt per step; 0 turns prompt lookup off. None: each engine's "
        "measured best (transformers 3: decode x1.6; llama.cpp 0: its passes over a few tokens cost nearly a "
        "token each, so drafts slow it down; rag bench).",
    )
    passage_states: bool = Field(
        default=False,
        description="Keep each passage's keys and values (llama.cpp engine), computed once after the fixed prompt, "
        "so a question reads only each passage's number and title and its own words: first token 1.7 s instead of "
        "3.8 s (LeCun question, AMD EPYC, 2 cores). Off by default: with llama.cpp it answers fewer right than "
        "reading the passages (rag eval seeds 61.2% vs 65.7%, fresh 45.0% vs 55.0%; gate 11 vs 14 of 19).",
    )
    passage_state_dir: Path | None = Field(
        default=None,
        description="Where passage states are kept; default cache_dir/passage-states (keyed by model, prompt and "
        "text, so indexes share them).",
    )
    passage_state_gb: float = Field(
        default=8.0,
        gt=0,
        description="Disk budget for passage states (~5 MB per passage); least recently used out first.",
    )
    passage_state_reread_tokens: int = Field(
        default=0,
        ge=0,
        le=256,
        description="Tokens at the start of each passage read again in place, after the passages before it, "
        "instead of taken from its state (EPIC's LegoLink repair; docs/speed.md).",
    )
    passage_state_index_chunks: int = Field(
        default=2000,
        ge=0,
        description="Collections of up to this many chunks get every passage state when indexed (about a second per "
        "chunk); larger ones get them lazily, in the background after a question reads a passage without one.",
    )
    history_turns: int = Field(default=3, ge=0)
    history_turn_chars: int = Field(
        default=1500, ge=100, description="Each earlier question and answer is read up to this many characters."
    )
    max_summary_documents: int = Field(
        default=8, ge=1, description="A summary covers at most this many documents (one or two sentences each)."
    )
    summary_section_chars: int = Field(
        default=6000,
        ge=500,
        description="A document longer than this is summarised section by section, then from the section summaries.",
    )
    max_listed_documents: int = Field(default=50, ge=1, description="Documents named in answer to 'what do you have?'.")
    max_question_chars: int = Field(default=2000, ge=10)

    # Citation verification and abstention
    support_threshold: float = Field(default=0.6, ge=0, le=1)
    min_relevance: float = Field(default=0.15, ge=-1, le=1)
    disabled_checks: Annotated[list[AbstainedBy], NoDecode] = Field(
        default=["contradiction"],
        description="Abstention steps to skip (rag.answering.checks), by name: off topic, names missing, model, "
        "citations, contradiction, wrong speaker, cited names, answer check, polarity. Each one's wins and losses "
        "are in rag eval. The contradiction step is off by default: on seeds, fresh and the manual it stopped no "
        "trap and refused four answerable drafts; yes/no answers now follow their evidence instead "
        "(docs/evaluation.md). An empty list runs all nine.",
    )
    answer_check_min_log_odds: float = Field(
        default=0.0,
        description="The answer check (the model asked whether the cited passages answer the question, one short "
        "prompt per answer) lets the answer stand when log P(yes) - log P(no) is at least this.",
    )
    claim_judge: bool = Field(
        default=False,
        description='A direct answer the support score would drop is put to the model ("Does the passage state '
        'this claim?", rag.answering.judge) before the answer is refused: it stands when the model says yes. Off: '
        "on labelled claims the support score separates better (AUC 0.996 against 0.956), and on the seeds the "
        "judge rescued no right answer and let one trap through (docs/evaluation.md).",
    )
    claim_judge_min_log_odds: float = Field(
        default=1.0,
        description="The claim judge finds a claim stated when log P(yes) - log P(no) is at least this. The model "
        "leans to yes: on 60 labelled claims of the seeds and SQuAD 1-8 (scripts/claim_judge.py), +1 kept 85% of "
        "supported claims and 6% of unsupported ones, 0 kept 55% of the unsupported.",
    )
    passage_judge: bool = Field(
        default=False,
        description="Order a fact question's passages by the model's judgement of each (\"Does the passage answer "
        'this question?", one prompt per passage) before it answers. Off: on SQuAD 1-8 it lifted paragraph R@1 '
        "from 0.80 to 0.83 for 2.9 s more per question on 2 cores (docs/evaluation.md).",
    )
    second_attempt: bool = Field(
        default=False,
        description='Before refusing a fact answer after generation, the model judges each passage ("Does the '
        'passage answer this question?") and, if one is judged as answering, writes once more from it alone, '
        "told why the first answer was refused; that answer is checked the same way. Off: on the seeds and the "
        "fresh set it recovered no right answer and added ~4 s to each refusal (docs/evaluation.md).",
    )
    yes_no_by_evidence: bool = Field(
        default=True,
        description="A yes/no answer whose Yes or No the model, asked the question over the cited passages alone, "
        "reads clearly the other way (or whose claim no passage supports) becomes that word and the passage "
        "sentence that shows it (rag.answering.yes_no); off, the polarity step refuses such an answer.",
    )
    polarity_bias: float = Field(
        default=3.0,
        description="Where the model's yes/no read over cited passages is even: it leans to yes. On the seeds its "
        "reads were +4.2 to +4.7 behind right Yes answers and +1.6 behind a right No, so even is about +3.",
    )
    polarity_margin: float = Field(
        default=1.0,
        ge=0,
        description="A yes/no answer's Yes is refused when the model, asked the question over the cited passages "
        "alone, reads below polarity_bias - this (log-odds), a No when it reads above polarity_bias + this.",
    )

    # Server (`python app.py`): UI, API and widget on one port
    host: str = "127.0.0.1"
    port: int = Field(default=7860, ge=1, le=65535)
    api_key: SecretStr | None = Field(
        default=None, description="When set, the API and the widget require it (and the UI asks for it)."
    )
    admin_token: SecretStr | None = Field(default=None, description="Uploads are refused unless it is set and given.")
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default=["http://localhost:8000", "http://127.0.0.1:8000"],
        description="Pages that may embed the UI or widget and call the API (CORS, CSP frame-ancestors).",
    )
    max_upload_mb: float = Field(default=50.0, gt=0, description="One upload request, all files together.")
    max_waiting: int = Field(default=16, ge=1, description="Questions waiting for the model; more get HTTP 503.")
    max_queue_wait_s: float = Field(
        default=240.0,
        gt=0,
        description="How long a question may wait for the model; then HTTP 503 with Retry-After (an `error` "
        "event in a stream). On a slow CPU a full line is minutes long: a client is told to come back, not kept.",
    )
    max_auth_failures: int = Field(
        default=10, ge=1, description="Wrong API keys or admin tokens one client may send per minute; then HTTP 429."
    )
    log_format: Literal["json", "text"] = Field(
        default="text",
        description="The server's log: one line per request (id, route, status, timings), as JSON for a log "
        "collector or as text for a person.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _config_file()
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        """RAG_ALLOWED_ORIGINS may be a JSON list or comma/space separated."""
        if isinstance(value, str):
            value = json.loads(value) if value.lstrip().startswith("[") else value.replace(",", " ").split()
        return value

    @field_validator("disabled_checks", mode="before")
    @classmethod
    def _split_checks(cls, value: object) -> object:
        """RAG_DISABLED_CHECKS may be a JSON list or comma separated (the names have spaces)."""
        if isinstance(value, str):
            value = json.loads(value) if value.lstrip().startswith("[") else [v.strip() for v in value.split(",")]
            value = [v for v in value if v]
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _check_origins(cls, origins: list[str]) -> list[str]:
        """Browsers compare origins exactly (scheme://host[:port]), so a path or a typo would never match."""
        checked = []
        for origin in origins:
            parts = urlsplit(origin.rstrip("/"))
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query:
                raise ValueError(f"{origin!r} is not an origin like http://intranet.example.com:8080")
            checked.append(f"{parts.scheme}://{parts.netloc.lower()}")
        return checked

    @property
    def passage_states_folder(self) -> Path:
        return self.passage_state_dir or self.cache_dir / "passage-states"

    @property
    def upload_dir(self) -> Path:
        """Uploaded files live next to the index they are in, and are indexed with the corpus."""
        return self.index_dir / "uploads"

    def model_post_init(self, __context: object) -> None:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("chunk_overlap must be smaller than chunk_size")
        if self.generator_engine == "openai" and not self.engine_url:
            raise ValueError('generator_engine = "openai" needs engine_url (RAG_ENGINE_URL=http://host:port/v1)')
        if self.store == "postgres" and self.database_url is None:
            raise ValueError('store = "postgres" needs database_url (RAG_DATABASE_URL=postgresql://...)')
        if self.database_url is not None and any(c in self.database_url.get_secret_value() for c in "\r\n"):
            raise ValueError("database_url has a line break in it (a stray line pasted with it?); give one URL")
        if self.engine_url is not None:
            parts = urlsplit(self.engine_url)
            if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in self.engine_url):
                raise ValueError(
                    f"engine_url must be an http(s) URL such as http://127.0.0.1:8080/v1, not {self.engine_url!r}"
                )


def settings_error(exc: ValidationError) -> str:
    """A settings error in one line, naming each setting and what is wrong, never echoing the values given
    (a database_url or an API key would end up in a terminal or a log)."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()))
        message = str(error.get("msg", "")).removeprefix("Value error, ")
        parts.append(f"setting {where}: {message}" if where else message)
    return "; ".join(parts)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
