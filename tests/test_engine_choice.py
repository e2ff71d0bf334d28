"""`generator_engine = "auto"`: each installed engine measured on this CPU, the faster one recorded and reused,
measured again when what the speeds depend on changes; the dtypes follow the CPU's bf16 instructions."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from rag import cpu
from rag.generation import choice, create_engine
from rag.generation.choice import build_engine, engine_choice, installed_engines
from rag.settings import Settings


@pytest.fixture
def private_record(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    name = f"engine-choice-test-{uuid.uuid4().hex}.json"
    monkeypatch.setattr(choice, "CHOICE_FILE", name)
    yield
    (Settings().cache_dir / name).unlink(missing_ok=True)


def test_the_faster_engine_is_measured_once_then_reused_until_something_changes(
    private_record: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(generator_model="smollm2-135m")
    first = engine_choice(settings)
    assert {c.engine for c in first.measured} == set(installed_engines())
    assert first.engine == min(first.measured, key=lambda c: c.whole_s).engine
    assert all(c.first_token_s > 0 and c.decode_tokens_per_s > 0 for c in first.measured)
    assert first.summary().startswith(f"engine: {first.engine}")
    assert type(create_engine(settings)) is type(build_engine(first.engine, settings))  # what "auto" runs

    def no_measuring(engine: str, settings: Settings) -> choice.Calibration:
        raise RuntimeError("measured again")

    monkeypatch.setattr(choice, "_measure_in_subprocess", no_measuring)
    assert engine_choice(settings) == first  # recorded: nothing is measured
    with pytest.raises(RuntimeError, match="measured again"):
        engine_choice(settings.model_copy(update={"prompt_lookup_tokens": 2}))  # another configuration


def test_a_cpu_without_bf16_reads_in_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_VNNI")
    cpu.cpu_info.cache_clear()
    try:
        assert not cpu.cpu_info().has_bf16
        assert cpu.fast_dtype("auto") == "float32"
        assert cpu.fast_dtype("bfloat16") == "bfloat16"  # a setting that names a dtype is obeyed
    finally:
        cpu.cpu_info.cache_clear()
    assert cpu.fast_dtype("auto") == ("bfloat16" if cpu.cpu_info().has_bf16 else "float32")
