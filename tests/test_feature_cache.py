"""Frozen-encoder features reused across folds at prediction: exact, bounded, inference only."""

from __future__ import annotations

import copy

import pytest
import torch
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_medsam_fusion.foundation import FoundationSpec
from nnunet_medsam_fusion.foundation.feature_cache import FeatureCache
from nnunet_medsam_fusion.settings import ENCODER_PRECISION_ENV
from nnunet_medsam_fusion.trainers import nnUNetTrainerMedSAMFusionTiny
from nnunet_medsam_fusion.trainers.foundation_fusion import PLANS_KEY

from .conftest import load_dataset_json, load_plans

SPEC = FoundationSpec("medsam", "tiny", 64, intensity_window=(-2.0, 4.0))


@pytest.fixture(autouse=True)
def float32_encoder(monkeypatch):
    monkeypatch.setenv(ENCODER_PRECISION_ENV, "fp32")


def features(value: float, nbytes: int = 400) -> list[torch.Tensor]:
    return [torch.full((nbytes // 4,), float(value))]


def test_cyclic_scan_over_budget_keeps_a_prefix_that_hits_in_every_later_fold():
    """Fold-outer loop over 10 tiles with room for 4: LRU would never hit; admission-while-room hits 4 per fold."""
    cache = FeatureCache(budget_bytes=4 * 400)
    hits_per_fold = []
    for _fold in range(3):
        cache.weights_loaded(b"same weights")
        before = cache.hits
        for tile in range(10):
            key = cache.key(torch.full((1, 1, 4, 4), float(tile)), "fp32")
            if cache.lookup(key, torch.device("cpu")) is None:
                cache.store(key, features(tile))
        hits_per_fold.append(cache.hits - before)
    assert hits_per_fold == [0, 4, 4]
    assert cache.used_bytes <= cache.budget_bytes


def test_a_new_case_replaces_the_previous_cases_features():
    cache = FeatureCache(budget_bytes=4 * 400)
    for case in range(2):
        for fold in range(3):
            cache.weights_loaded(b"same weights")
            for tile in range(4):
                key = cache.key(torch.full((1, 1, 4, 4), float(10 * case + tile)), "fp32")
                found = cache.lookup(key, torch.device("cpu"))
                if found is None:
                    assert fold == 0, (case, fold, tile)
                    cache.store(key, features(tile))
                else:
                    assert torch.equal(found[0], features(tile)[0])
    assert cache.hits == 2 * 2 * 4 and len(cache.entries) == 4


def test_other_weights_clear_the_cache_and_change_the_key():
    cache = FeatureCache()
    cache.weights_loaded(b"fold 0 weights")
    tile = torch.randn(1, 1, 8, 8)
    key = cache.key(tile, "fp32")
    cache.store(key, features(1.0))
    assert cache.key(tile, "bf16") != key and cache.key(tile + 1e-7, "fp32") != key
    cache.weights_loaded(b"fold 1 weights")
    assert not cache.entries and cache.key(tile, "fp32") != key
    cache.weights_loaded(None)
    assert cache.weights is None


def build_network(root):
    plans = load_plans(root)
    plans["configurations"]["2d"][PLANS_KEY] = SPEC.to_dict()
    manager = PlansManager(plans)
    configuration = manager.get_configuration("2d")
    network = nnUNetTrainerMedSAMFusionTiny.build_network_architecture(manager, configuration, 1, 2, False)
    return network, manager, configuration


def fold_parameters(network, n_folds: int, same_encoder: bool = True) -> list[dict]:
    """State dicts as nnU-Net's predictor holds them: same frozen encoder, different trainable weights."""
    folds = []
    for fold in range(n_folds):
        state = {k: v.clone() for k, v in network.state_dict().items()}
        generator = torch.Generator().manual_seed(fold)
        for key, value in state.items():
            trainable = not key.startswith("foundation.")
            if value.is_floating_point() and (trainable or not same_encoder):
                state[key] = value + 0.05 * torch.randn(value.shape, generator=generator)
        folds.append(state)
    return folds


def ensemble_prediction(root, network, manager, configuration, parameters, volume):
    """nnU-Net's own per-case ensemble: load each fold's parameters, predict every tile and mirror, average."""
    predictor = nnUNetPredictor(tile_step_size=0.5, use_mirroring=True, perform_everything_on_device=False,
                                device=torch.device("cpu"), verbose=False, allow_tqdm=False)
    predictor.manual_initialization(network, manager, configuration, parameters, load_dataset_json(root),
                                    "nnUNetTrainerMedSAMFusionTiny", (0, 1))
    calls = []
    hook = network.foundation.register_forward_hook(lambda *_: calls.append(1))
    try:
        logits = predictor.predict_logits_from_preprocessed_data(volume)
    finally:
        hook.remove()
    return logits, len(calls)


@pytest.mark.parametrize("same_encoder", [True, False])
def test_ensemble_prediction_reuses_features_exactly(planned_dataset, same_encoder):
    torch.manual_seed(0)
    network, manager, configuration = build_network(planned_dataset)
    parameters = fold_parameters(network, 3, same_encoder)
    volume = torch.randn(1, 2, 80, 90)
    cached, cached_calls = ensemble_prediction(planned_dataset, network, manager, configuration, parameters,
                                               volume)
    reference_network = copy.deepcopy(network)
    reference_network.feature_cache.budget_bytes = 0  # the cache off: every fold computes its features
    reference, reference_calls = ensemble_prediction(planned_dataset, reference_network, manager, configuration,
                                                     parameters, volume)
    assert torch.equal(cached, reference)
    tiles_and_mirrors = reference_calls // 3
    assert tiles_and_mirrors == 2 * 4 * 4  # 2 slices x 2 x 2 tiles x 4 mirrorings
    assert cached_calls == (tiles_and_mirrors if same_encoder else reference_calls)


def test_training_never_caches(planned_dataset):
    network, manager, configuration = build_network(planned_dataset)
    network.train()
    network.eval()
    network.load_state_dict(network.state_dict())
    x = torch.randn(1, 1, *configuration.patch_size)
    with torch.no_grad():
        network(x)
        network(x)
    assert network.feature_cache.hits == network.feature_cache.misses == 0 and not network.feature_cache.entries
