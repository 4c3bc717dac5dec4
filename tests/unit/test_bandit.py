"""The variant router on a simulated population: traffic moves to the variant users like."""

from __future__ import annotations

import random

from core.settings import AgentSettings, Settings
from runs.feedback import VariantRouter, tally, wilson

AGENT = AgentSettings(
    variants={"a": {}, "b": {}},
    routing={"policy": "thompson", "exploration_floor": 0.1, "seed": 7},
)


def _simulate(seed: int, runs: int, like: dict[str, float]) -> list[str]:
    router = VariantRouter(Settings(env="test"), seed)
    population = random.Random(seed + 1000)
    seen: list[tuple[str, bool]] = []
    chosen: list[str] = []
    for _ in range(runs):
        variant, _ = router.choose(AGENT, tally(seen))
        assert variant is not None
        chosen.append(variant)
        seen.append((variant, population.random() < like[variant]))
    return chosen


def _runs_until_b_leads(chosen: list[str], window: int = 20, share: float = 0.8) -> int:
    for n in range(window, len(chosen) + 1):
        if chosen[n - window : n].count("b") / window >= share:
            return n
    return len(chosen) + 1


def test_traffic_shifts_to_the_variant_users_like_more() -> None:
    like = {"a": 0.3, "b": 0.7}
    ns = []
    for seed in range(10):
        chosen = _simulate(seed, 300, like)
        ns.append(_runs_until_b_leads(chosen))
        # After the shift B carries most traffic; the floor keeps exploring A.
        late = chosen[150:]
        assert 0.8 <= late.count("b") / len(late) < 1.0
    # N: runs until B has 80 % of a 20-run window, over 10 seeded populations.
    assert max(ns) <= 40, ns


def test_same_seed_same_choices_and_equal_variants_share() -> None:
    assert _simulate(5, 100, {"a": 0.5, "b": 0.5}) == _simulate(5, 100, {"a": 0.5, "b": 0.5})
    fixed = AgentSettings(variants={"a": {}, "b": {}}, routing={"default": "b"})
    assert VariantRouter(Settings(env="test")).choose(fixed, {}) == ("b", "fixed")
    assert VariantRouter(Settings(env="test")).choose(AgentSettings(), {}) == (None, "no variants")


def test_wilson_interval() -> None:
    low, high = wilson(3, 4)
    assert (round(low, 4), round(high, 4)) == (0.3006, 0.9544)
    assert wilson(0, 0) == (0.0, 0.0)
