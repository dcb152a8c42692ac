"""Profiles are typed (``planning.profiles.ProfileName``): what differs between them is a
field of the ``Profile`` (``comparable``, ``lighter``), never a test on its name's text."""

from __future__ import annotations

import math

import pytest

from fer_bench.planning.profiles import PROFILES, ProfileName, get_profile, profile_named

SPEC_EPOCHS = 40


def cost(profile) -> tuple[float, int]:
    """(images kept, epochs) of a profile; all images and SPEC's epochs where it says None."""
    return (math.inf if profile.subset is None else profile.subset,
            SPEC_EPOCHS if profile.epochs is None else profile.epochs)


def test_every_name_has_its_profile_and_lookups_take_the_text():
    assert set(PROFILES) == set(ProfileName)
    assert all(PROFILES[name].name is name for name in ProfileName)
    assert get_profile(None) is get_profile("") is PROFILES[ProfileName.DEFAULT]
    assert get_profile("smoke") is PROFILES[ProfileName.SMOKE]
    with pytest.raises(ValueError, match=r"unknown fer_bench profile 'quick'; valid: default, smoke, cpu, paper"):
        get_profile("quick")


def test_a_record_s_profile_text_maps_to_its_profile_or_none():
    assert profile_named("smoke") is PROFILES[ProfileName.SMOKE]
    assert profile_named("") is None            # no profile chosen
    assert profile_named("turbo") is None       # a name this version does not know


def test_only_the_pipeline_check_is_not_comparable():
    assert [p.name for p in PROFILES.values() if not p.comparable] == [ProfileName.SMOKE]


def test_lighter_profiles_cost_less_and_come_lightest_first():
    for profile in PROFILES.values():
        lighter = [PROFILES[name] for name in profile.lighter]
        assert profile.name not in profile.lighter
        for other in lighter:
            assert all(a <= b for a, b in zip(cost(other), cost(profile), strict=True)), (other.name, profile.name)
            assert cost(other) != cost(profile)
        assert [cost(p) for p in lighter] == sorted(cost(p) for p in lighter)
    assert PROFILES[ProfileName.SMOKE].lighter == ()
