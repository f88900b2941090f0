"""FleetWeights: defaults, overrides from JSON, the resolver's layers, and every error."""

from __future__ import annotations

import dataclasses
import math

import pytest

from routing import TERMS, FleetWeights, WeightsError, resolve_weights


def test_terms_match_the_weight_fields_and_as_dict():
    assert tuple(f.name for f in dataclasses.fields(FleetWeights)) == TERMS
    assert tuple(FleetWeights().as_dict()) == TERMS


def test_defaults():
    assert FleetWeights().as_dict() == {
        "capability_fit": 1.0,
        "load": 2.0,
        "health": 0.5,
        "affinity": 0.5,
        "cost_rate": 0.25,
        "age": 1.0,
        "priority": 1.0,
    }


def test_from_mapping_overrides_only_the_terms_given_in_either_case():
    w = FleetWeights.from_mapping({"capabilityFit": 3, "cost_rate": 0.0})
    assert w == dataclasses.replace(FleetWeights(), capability_fit=3.0, cost_rate=0.0)
    assert isinstance(w.capability_fit, float)
    assert FleetWeights.from_mapping({}) == FleetWeights()


@pytest.mark.parametrize(
    ("mapping", "term", "fragment"),
    [
        ({"speed": 1.0}, "speed", "unknown weight term 'speed'"),
        ({"Load_": 1.0}, "Load_", "unknown weight term"),
        ({"load": -1.0}, "load", "weight 'load' must be a finite number >= 0, got -1.0"),
        ({"health": math.nan}, "health", "weight 'health' must be a finite number >= 0, got nan"),
        ({"age": math.inf}, "age", "got inf"),
        ({"priority": "1"}, "priority", "weight 'priority' must be a number, got '1'"),
        ({"priority": True}, "priority", "must be a number, got True"),
        ({"costRate": 1.0, "cost_rate": 2.0}, "cost_rate", "weight 'cost_rate' given twice"),
    ],
)
def test_from_mapping_rejects_with_the_term_named(mapping, term, fragment):
    with pytest.raises(WeightsError, match=fragment.replace("(", r"\(")) as err:
        FleetWeights.from_mapping(mapping)
    assert err.value.term == term
    assert isinstance(err.value, ValueError)


def test_unknown_term_lists_the_known_ones():
    with pytest.raises(WeightsError) as err:
        FleetWeights.from_mapping({"speed": 1.0})
    assert all(term in str(err.value) for term in TERMS)


def test_direct_construction_is_validated_too():
    with pytest.raises(WeightsError, match="weight 'load' must be a finite number >= 0") as err:
        FleetWeights(load=-0.5)
    assert err.value.layer is None


def test_weight_by_name():
    assert FleetWeights().weight("load") == 2.0
    with pytest.raises(WeightsError, match="unknown weight term 'nope'"):
        FleetWeights().weight("nope")


def test_resolver_layers_defaults_then_product_then_request():
    defaults = FleetWeights(load=3.0)
    product = {"load": 4.0, "health": 0.0}
    request = {"load": 5.0, "costRate": 2.0}
    w = resolve_weights(defaults, product, request)
    assert (w.load, w.health, w.cost_rate, w.age) == (5.0, 0.0, 2.0, 1.0)
    assert resolve_weights(defaults, product, None).load == 4.0
    assert resolve_weights(defaults, None, request).health == 0.5
    assert resolve_weights(defaults, None, None) is defaults
    assert resolve_weights(defaults, {}, {}) is defaults


@pytest.mark.parametrize(
    ("product", "request_", "layer"),
    [
        ({"speed": 1.0}, None, "product override"),
        ({"load": -1.0}, {"load": 1.0}, "product override"),
        ({"load": 1.0}, {"age": math.nan}, "request override"),
        (None, {"speed": 1.0}, "request override"),
    ],
)
def test_resolver_errors_name_the_layer(product, request_, layer):
    with pytest.raises(WeightsError, match=f"^{layer}: ") as err:
        resolve_weights(FleetWeights(), product, request_)
    assert err.value.layer == layer
