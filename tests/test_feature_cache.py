"""Frozen-encoder features reused at prediction: exact, bounded, inference only, and invalidated by every route
that can change the frozen weights."""

from __future__ import annotations

import copy

import pytest
import torch
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_medsam_fusion.foundation import FoundationSpec, load_foundation_weights
from nnunet_medsam_fusion.foundation.feature_cache import FeatureCache
from nnunet_medsam_fusion.model_folder import FOUNDATION_KEY
from nnunet_medsam_fusion.testing.nnunet_env import load_dataset_json, load_plans
from nnunet_medsam_fusion.testing.tiny_checkpoints import write_tiny_medsam_checkpoint
from nnunet_medsam_fusion.trainers import nnUNetTrainerMedSAM2FusionTiny, nnUNetTrainerMedSAMFusionTiny

WINDOW = (-2.0, 4.0)
SPECS = {nnUNetTrainerMedSAMFusionTiny: FoundationSpec("medsam", "tiny", 64, intensity_window=WINDOW),
         nnUNetTrainerMedSAM2FusionTiny: FoundationSpec("medical_sam2", "tiny", 64, intensity_window=WINDOW)}
CPU = torch.device("cpu")


def features(value: float, nbytes: int = 400) -> list[torch.Tensor]:
    return [torch.full((nbytes // 4,), float(value))]


def test_cyclic_scan_over_budget_keeps_a_prefix_that_hits_in_every_later_fold():
    """Fold-outer loop over 10 tiles with room for 4: LRU would never hit; admission-while-room hits 4 per fold."""
    cache = FeatureCache(budget_bytes=4 * 400)
    weights = [torch.ones(3)]
    hits_per_fold = []
    for _fold in range(3):
        weights[0].copy_(torch.ones(3))  # what loading the next fold's (identical) frozen weights does
        cache.check_weights(weights)
        before = cache.hits
        for tile in range(10):
            key = cache.key(torch.full((1, 1, 4, 4), float(tile)), "fp32")
            if cache.lookup(key, CPU) is None:
                cache.store(key, features(tile))
        hits_per_fold.append(cache.hits - before)
    assert hits_per_fold == [0, 4, 4]
    assert cache.used_bytes <= cache.budget_bytes


def test_a_new_case_replaces_the_previous_cases_features():
    cache = FeatureCache(budget_bytes=4 * 400)
    weights = [torch.ones(3)]
    for case in range(2):
        for fold in range(3):
            weights[0].copy_(torch.ones(3))
            cache.check_weights(weights)
            for tile in range(4):
                key = cache.key(torch.full((1, 1, 4, 4), float(10 * case + tile)), "fp32")
                found = cache.lookup(key, CPU)
                if found is None:
                    assert fold == 0, (case, fold, tile)
                    cache.store(key, features(tile))
                else:
                    assert torch.equal(found[0], features(tile)[0])
    assert cache.hits == 2 * 2 * 4 and len(cache.entries) == 4


def hits_per_fold(cache: FeatureCache, tiles: list[float], folds: int = 3) -> list[int]:
    """One case of a fold-outer ensemble: per fold, reload the (identical) frozen weights and scan the tiles."""
    weights = [torch.ones(3)]
    hits = []
    for _fold in range(folds):
        weights[0].copy_(torch.ones(3))
        cache.check_weights(weights)
        before = cache.hits
        for tile in tiles:
            key = cache.key(torch.full((1, 1, 4, 4), float(tile)), "fp32")
            if cache.lookup(key, CPU) is None:
                cache.store(key, features(tile))
        hits.append(cache.hits - before)
    return hits


def test_a_new_case_that_starts_with_a_tile_seen_before_still_replaces_the_previous_case():
    """Zero padding or background makes a new case's first tile equal to one of the previous case: that hit must
    not keep the previous case's entries, or every tile of the new case is refused for the rest of the run."""
    cache = FeatureCache(budget_bytes=4 * 400)
    background = 0.0
    assert hits_per_fold(cache, [1, 2, 3, background]) == [0, 4, 4]
    assert hits_per_fold(cache, [background, 11, 12, 13]) == [1, 4, 4]
    assert hits_per_fold(cache, [background, 21, 22, 23]) == [1, 4, 4]
    assert cache.used_bytes <= cache.budget_bytes


def test_overflow_of_the_current_case_does_not_drop_its_cached_prefix():
    """A tile refused for lack of room misses again in every later fold; that miss is no new case."""
    cache = FeatureCache(budget_bytes=3 * 400)
    assert hits_per_fold(cache, [0, 1, 2, 3, 4]) == [0, 3, 3]
    assert hits_per_fold(cache, [0, 5, 6, 7, 8]) == [1, 3, 3]  # tile 0 kept, 5 and 6 replace 1 and 2


def test_a_tile_refused_in_one_case_that_recurs_in_the_next_is_no_new_case_in_its_later_folds():
    """The previous case's refused tile (here background) comes back first in the next case, is refused again (the
    cache is full), and must not count as unseen in that case's later folds, which would drop its entries."""
    cache = FeatureCache(budget_bytes=3 * 400)
    background = 0.0
    assert hits_per_fold(cache, [1, 2, 3, background]) == [0, 3, 3]
    assert hits_per_fold(cache, [background, 11, 12, 13]) == [0, 3, 3]


def test_entries_hold_only_their_own_bytes_on_the_cpu(planned_dataset):
    """A feature sliced out of a CPU micro-batch is a view of the whole batch: the cache must store a copy, and the
    bytes it holds alive are what its budget bounds."""
    network, _, configuration = build_network(planned_dataset, nnUNetTrainerMedSAM2FusionTiny)
    cache = network.foundation.feature_cache
    with torch.inference_mode():
        network(torch.randn(1, 1, *configuration.patch_size))
    cache.budget_bytes = 2 * cache.used_bytes  # room for two of the six images of the next micro-batch
    with torch.inference_mode():
        network(torch.randn(6, 1, *configuration.patch_size))
    assert len(cache.entries) == 2
    storages = {f.untyped_storage().data_ptr(): f.untyped_storage().nbytes()
                for entry in cache.entries.values() for f in entry.features}
    assert sum(storages.values()) == cache.used_bytes


def test_other_weight_values_clear_the_cache_and_the_key_follows_the_input():
    cache = FeatureCache()
    weights = [torch.zeros(4)]
    cache.check_weights(weights)
    tile = torch.randn(1, 1, 8, 8)
    key = cache.key(tile, "fp32")
    cache.store(key, features(1.0))
    assert cache.key(tile, "bf16") != key and cache.key(tile + 1e-7, "fp32") != key
    cache.check_weights(weights)  # nothing changed: nothing checked again
    assert cache.entries
    weights[0][0] = 1.0
    cache.check_weights(weights)
    assert not cache.entries


def build_network(root, trainer=nnUNetTrainerMedSAMFusionTiny):
    plans = load_plans(root)
    plans["configurations"]["2d"][FOUNDATION_KEY] = SPECS[trainer].to_dict()
    manager = PlansManager(plans)
    configuration = manager.get_configuration("2d")
    network = trainer.build_network_architecture(manager, configuration, 1, 2, False)
    return network.eval(), manager, configuration


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


def encoder_calls(network) -> list[int]:
    """Counts the images the frozen image encoder really computes (cache hits never reach it)."""
    calls: list[int] = []
    network.foundation.image_encoder.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    return calls


def ensemble_prediction(root, network, manager, configuration, parameters, volume):
    """nnU-Net's own per-case ensemble: load each fold's parameters, predict every tile and mirror, average."""
    predictor = nnUNetPredictor(tile_step_size=0.5, use_mirroring=True, perform_everything_on_device=False,
                                device=CPU, verbose=False, allow_tqdm=False)
    predictor.manual_initialization(network, manager, configuration, parameters, load_dataset_json(root),
                                    "nnUNetTrainerMedSAMFusionTiny", (0, 1))
    calls = encoder_calls(network)
    return predictor.predict_logits_from_preprocessed_data(volume), sum(calls)


@pytest.mark.parametrize("same_encoder", [True, False])
def test_ensemble_prediction_reuses_features_exactly(planned_dataset, same_encoder):
    torch.manual_seed(0)
    network, manager, configuration = build_network(planned_dataset)
    parameters = fold_parameters(network, 3, same_encoder)
    volume = torch.randn(1, 2, 80, 90)
    reference_network = copy.deepcopy(network)
    reference_network.foundation.feature_cache.budget_bytes = 0  # the cache off: every fold computes its features
    cached, cached_calls = ensemble_prediction(planned_dataset, network, manager, configuration, parameters,
                                               volume)
    reference, reference_calls = ensemble_prediction(planned_dataset, reference_network, manager, configuration,
                                                     parameters, volume)
    assert torch.equal(cached, reference)
    tiles_and_mirrors = reference_calls // 3
    assert tiles_and_mirrors == 2 * 4 * 4  # 2 slices x 2 x 2 tiles x 4 mirrorings
    assert cached_calls == (tiles_and_mirrors if same_encoder else reference_calls)


def test_only_the_fused_levels_are_stored(planned_dataset):
    network, _, configuration = build_network(planned_dataset, nnUNetTrainerMedSAM2FusionTiny)
    with torch.inference_mode():
        network(torch.randn(1, 1, *configuration.patch_size))
    [entry] = network.foundation.feature_cache.entries.values()
    grids = network.foundation.feature_grids(*configuration.patch_size)
    assert network.feature_levels == (1, 2)
    assert [tuple(f.shape[-2:]) for f in entry.features] == [grids[1], grids[2]]  # no stride-4 map


def test_no_caching_outside_inference_mode(planned_dataset):
    network, _, configuration = build_network(planned_dataset)
    x = torch.randn(1, 1, *configuration.patch_size)
    with torch.no_grad():  # nnU-Net's validation step during training
        network(x)
        network(x)
    network.train()
    network(x)
    cache = network.foundation.feature_cache
    assert cache.hits == cache.misses == 0 and not cache.entries


def change_by_network_load(network):
    state = network.state_dict()
    key = "foundation.image_encoder.patch_embed.proj.weight"
    state[key] = state[key] + 1
    network.load_state_dict(state)


def change_by_foundation_load(network):
    state = network.foundation.state_dict()
    state["image_encoder.patch_embed.proj.weight"] = state["image_encoder.patch_embed.proj.weight"] + 1
    network.foundation.load_state_dict(state)


def change_by_image_encoder_load(network):
    state = network.foundation.image_encoder.state_dict()
    state["patch_embed.proj.weight"] = state["patch_embed.proj.weight"] + 1
    network.foundation.image_encoder.load_state_dict(state)


def change_in_place(network):
    with torch.no_grad():
        network.foundation.image_encoder.patch_embed.proj.weight.mul_(2)


def change_by_swapping_the_tensor(network):
    weight = network.foundation.image_encoder.patch_embed.proj.weight
    weight.data = weight.data + 1  # a new storage, the same Parameter object


def change_by_moving(network):
    network.foundation.image_encoder.to(torch.float64)
    with torch.no_grad():
        network.foundation.image_encoder.patch_embed.proj.weight.add_(1)
    network.foundation.image_encoder.to(torch.float32)


@pytest.mark.parametrize("change", [change_by_network_load, change_by_foundation_load, change_by_image_encoder_load,
                                    change_in_place, change_by_swapping_the_tensor, change_by_moving,
                                    "package_loader"])
def test_every_route_that_changes_the_frozen_weights_invalidates(planned_dataset, tmp_path, change):
    network, _, configuration = build_network(planned_dataset)
    x = torch.randn(1, 1, *configuration.patch_size)
    with torch.inference_mode():
        first = network(x)
    with torch.inference_mode():
        if change == "package_loader":
            write_tiny_medsam_checkpoint(tmp_path / "medsam.pth", seed=7)
            load_foundation_weights(network.foundation, tmp_path / "medsam.pth")
        else:
            change(network)
        calls = encoder_calls(network)
        changed = network(x)
    computed = len(calls)
    reference = copy.deepcopy(network)
    reference.foundation.feature_cache.budget_bytes = 0
    with torch.inference_mode():
        expected = reference(x)
    assert computed == 1, "the changed encoder must compute again"
    assert torch.equal(changed, expected) and not torch.equal(changed, first)


def test_identical_weights_loaded_again_keep_the_cache(planned_dataset):
    network, _, configuration = build_network(planned_dataset)
    x = torch.randn(1, 1, *configuration.patch_size)
    with torch.inference_mode():
        network(x)
        network.load_state_dict({k: v.clone() for k, v in network.state_dict().items()})
        calls = encoder_calls(network)
        network(x)
    assert calls == [] and network.foundation.feature_cache.hits == 1
