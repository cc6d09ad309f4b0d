"""Task metrics: hand-computed cases, independent computations (scikit-learn, brute-force loops,
the released UFO face protocol), the gpnas.metrics registry, and supernet-eval using a task's
metric end to end."""

from __future__ import annotations

from importlib.metadata import entry_points

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score
from sklearn.model_selection import KFold

from profilers import (
    DIGITS_TASKS,
    METRICS_ENTRY_POINT_GROUP,
    EvalBatch,
    EvalOutputs,
    LocalConfig,
    ReIDMetric,
    RetrievalMetric,
    TaskMetric,
    Top1Metric,
    VerificationMetric,
    as_eval_batch,
    available_metrics,
    create_metric,
    create_profiler,
    digits_batches,
    digits_eval_batches,
    digits_space,
    distance_matrix,
    get_metric,
    kfold_indices,
    pair_distances,
    reid_rankings,
    retrieval_ranks,
    verification_folds,
)
from supernet import MultipathSpace, Track2Space, ViTGeometry, get_space

BUILT_INS = {
    "top1": Top1Metric,
    "reid": ReIDMetric,
    "verification": VerificationMetric,
    "retrieval": RetrievalMetric,
}
# ufo-track2's choices on the digits images (1 x 8 x 8): tiny, and real data for every task kind.
DIGITS_GEOMETRY = ViTGeometry(embed_dim=32, patch_size=4, image_size=8, head_dim=8, in_chans=1)


def _points(xs, distance: str) -> torch.Tensor:
    """Embeddings whose distances order like the positions ``xs`` on a line: points on the x axis
    (euclidean), or unit vectors at angle ``0.3 x`` scaled by varying norms (cosine ignores norms)."""
    xs = torch.tensor(xs, dtype=torch.float64)
    if distance == "euclidean":
        return torch.stack([xs, torch.zeros_like(xs)], 1)
    norms = 1.0 + torch.arange(len(xs), dtype=torch.float64)
    return torch.stack([torch.cos(0.3 * xs), torch.sin(0.3 * xs)], 1) * norms[:, None]


def _np_distances(a: np.ndarray, b: np.ndarray, distance: str) -> np.ndarray:
    """An independent distance computation (numpy, pairwise differences)."""
    if distance == "cosine":
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
        return 1.0 - a @ b.T
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))


# ---------------------------------------------------------------------- top1
def test_top1_hand_computed():
    # argmax per row: 2, 0, 1; labels 2, 1, 1 -> rows 0 and 2 right: 2/3.
    logits = torch.tensor([[0.1, 0.2, 0.9], [0.8, 0.1, 0.1], [0.2, 0.7, 0.1]])
    result = Top1Metric()(EvalOutputs(logits, labels=torch.tensor([2, 1, 1])))
    assert result.value == pytest.approx(2 / 3) and result.count == 3 and result.primary == "top1"
    assert result.std == pytest.approx(np.sqrt(2 / 3 * 1 / 3 / 3))
    with pytest.raises(ValueError, match="labels range 0..5, but the outputs have 3 columns"):
        Top1Metric()(EvalOutputs(logits, labels=torch.tensor([0, 5, 1])))
    with pytest.raises(ValueError, match="metric 'top1' compares no embeddings"):
        Top1Metric(distance="cosine")


# ---------------------------------------------------------------------- reid
@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_reid_hand_computed_market1501_protocol(distance):
    # Gallery on a line (positions): g0 id1 cam0 @0.5, g1 id2 cam1 @1, g2 id1 cam1 @2,
    # g3 id3 cam0 @3, g4 id1 cam2 @4, g5 junk (-1) @0.1.
    # q0 id1 cam0 @0: ranking g5 g0 g1 g2 g3 g4; junk g5 and same-id-same-camera g0 are removed,
    #   leaving g1(-) g2(+) g3(-) g4(+): AP = (1/2 + 2/4) / 2 = 0.5, first match at rank 2,
    #   INP = 2 matches / rank 4 of the last = 0.5.
    # q1 id2 cam1: its only id-2 item, g1, is on its own camera -> not valid, left out.
    # q2 id3 cam1 @3.1: nearest is g3 (id3, camera 0: kept) -> AP 1, rank 1, INP 1.
    # mAP = (0.5 + 1) / 2 = 0.75; Rank-1 = 1/2; Rank-5 = 1; mINP = 0.75.
    g_x, g_ids, g_cams = [0.5, 1, 2, 3, 4, 0.1], [1, 2, 1, 3, 1, -1], [0, 1, 1, 0, 2, 0]
    q_x, q_ids, q_cams = [0.0, 1.05, 3.1], [1, 2, 3], [0, 1, 1]
    out = EvalOutputs(
        torch.cat([_points(q_x, distance), _points(g_x, distance)]),
        labels=torch.tensor(q_ids + g_ids),
        cameras=torch.tensor(q_cams + g_cams),
        is_query=torch.tensor([True] * 3 + [False] * 6),
    )
    result = ReIDMetric(distance=distance)(out)
    assert result.primary == "mAP" and result.value == pytest.approx(0.75) and result.count == 2
    assert result.values["rank1"] == pytest.approx(0.5) and result.values["rank5"] == 1.0
    assert result.values["mINP"] == pytest.approx(0.75)
    assert result.values["queries"] == 3 and result.values["valid_queries"] == 2
    assert result.std == pytest.approx(np.std([0.5, 1.0], ddof=1) / np.sqrt(2))
    # Without camera ids nothing is excluded: q0 ranks g0(+) g1(-) g2(+) g3(-) g4(+):
    # AP = (1 + 2/3 + 3/5) / 3; q1 finds g1 first (AP 1); q2 as before.
    no_cameras = EvalOutputs(out.outputs, labels=out.labels, is_query=out.is_query)
    expected = ((1 + 2 / 3 + 3 / 5) / 3 + 1 + 1) / 3
    assert ReIDMetric(distance=distance)(no_cameras).value == pytest.approx(expected)


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_reid_matches_sklearn_average_precision_and_a_brute_force_cmc(distance):
    rng = np.random.default_rng(0)
    query, gallery = rng.normal(size=(40, 8)), rng.normal(size=(200, 8))
    q_ids, g_ids = rng.integers(0, 15, 40), rng.integers(0, 15, 200)
    q_cams, g_cams = rng.integers(0, 4, 40), rng.integers(0, 4, 200)
    ranked = reid_rankings(query, gallery, q_ids, g_ids, q_cams, g_cams, distance=distance)
    blocked = reid_rankings(
        query, gallery, q_ids, g_ids, q_cams, g_cams, distance=distance, chunk_elements=300
    )  # one query per block
    dist = _np_distances(query, gallery, distance)
    expected_ap, first = [], []
    for i in range(40):
        kept = ~((g_ids == q_ids[i]) & (g_cams == q_cams[i]))  # Market-1501: same id and camera out
        relevant = g_ids[kept] == q_ids[i]
        if not relevant.any():
            assert not ranked.valid[i] and np.isnan(ranked.average_precision[i])
            continue
        expected_ap.append(average_precision_score(relevant, -dist[i, kept]))
        order = np.argsort(dist[i, kept])
        first.append(int(np.flatnonzero(relevant[order])[0]) + 1)
        assert ranked.average_precision[i] == pytest.approx(expected_ap[-1])
    assert ranked.valid_count == len(expected_ap) > 30
    assert ranked.mean_ap() == pytest.approx(np.mean(expected_ap))
    for k in (1, 5, 10):
        assert ranked.cmc(k) == pytest.approx(np.mean(np.array(first) <= k))
    np.testing.assert_allclose(blocked.average_precision, ranked.average_precision)
    np.testing.assert_array_equal(blocked.first_match, ranked.first_match)


def test_cosine_ignores_norms_and_euclidean_does_not():
    rng = np.random.default_rng(1)
    query, gallery = rng.normal(size=(20, 6)), rng.normal(size=(80, 6))
    for distance in ("cosine", "euclidean"):
        expected = _np_distances(query, gallery, distance)
        got = distance_matrix(torch.tensor(query), torch.tensor(gallery), distance)
        np.testing.assert_allclose(got.numpy(), expected, atol=1e-12)
        pairs = pair_distances(torch.tensor(query), torch.tensor(gallery[:20]), distance)
        np.testing.assert_allclose(pairs.numpy(), np.diag(expected[:, :20]), atol=1e-12)
    q_ids, g_ids = rng.integers(0, 8, 20), rng.integers(0, 8, 80)
    scale = rng.uniform(0.1, 10.0, size=(80, 1))
    for distance, same in (("cosine", True), ("euclidean", False)):
        plain = reid_rankings(query, gallery, q_ids, g_ids, distance=distance).mean_ap()
        scaled = reid_rankings(query, gallery * scale, q_ids, g_ids, distance=distance).mean_ap()
        assert (plain == pytest.approx(scaled)) is same, distance


def test_reid_without_valid_queries_or_fields_says_why():
    out = EvalOutputs(
        torch.eye(3), labels=torch.tensor([0, 1, 2]), is_query=torch.tensor([True, False, False])
    )
    with pytest.raises(ValueError, match="no query has a correct match"):
        ReIDMetric()(out)
    plain = EvalOutputs(torch.eye(3), labels=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"metric 'reid' needs the batch field\(s\) \['is_query'\].*gave"):
        ReIDMetric()(plain)


# ---------------------------------------------------------------------- retrieval
@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_retrieval_hand_computed_query_left_out_of_its_gallery(distance):
    # Items on a line: a0 (class 0) @0, a1 (0) @3, b0 (1) @1, b1 (1) @1.5, c0 (2) @10.
    # a0: b0 (1), b1 (1.5) are closer than a1 (3) -> rank 3; a1: b1 (1.5), b0 (2) closer than a0 (3)
    # -> rank 3; b0 and b1 find each other first -> rank 1; c0 has no other item of its class
    # -> a miss at every K. Recall@1 = 2/5, @2 = 2/5, @3 = 4/5, @4 = 4/5.
    # (With the query left in its own gallery every Recall@1 would be 1.)
    xs, labels = [0, 3, 1, 1.5, 10], torch.tensor([0, 0, 1, 1, 2])
    ranks = retrieval_ranks(_points(xs, distance), labels, distance=distance)
    np.testing.assert_array_equal(ranks, [3, 3, 1, 1, 0])
    result = RetrievalMetric(distance=distance, ks=(1, 2, 3, 4))(
        EvalOutputs(_points(xs, distance), labels=labels)
    )
    assert result.primary == "recall@1" and result.value == pytest.approx(0.4) and result.count == 5
    assert [result.values[f"recall@{k}"] for k in (1, 2, 3, 4)] == pytest.approx([0.4, 0.4, 0.8, 0.8])
    assert result.std == pytest.approx(np.sqrt(0.4 * 0.6 / 5))


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_retrieval_matches_a_brute_force_recall_at_k(distance):
    rng = np.random.default_rng(2)
    x, labels = rng.normal(size=(60, 5)), rng.integers(0, 12, 60)
    dist = _np_distances(x, x, distance)
    hits = {k: [] for k in (1, 2, 5, 10)}
    for i in range(60):
        others = np.array([j for j in range(60) if j != i])
        nearest = others[np.argsort(dist[i, others])]
        for k in hits:
            hits[k].append(bool((labels[nearest[:k]] == labels[i]).any()))
    result = RetrievalMetric(distance=distance, ks=tuple(hits), chunk_elements=100)(
        EvalOutputs(x, labels=labels)
    )
    for k, found in hits.items():
        assert result.values[f"recall@{k}"] == pytest.approx(np.mean(found)), k
    # A separate gallery: queries search only the other items (no self to leave out).
    is_query = np.arange(60) < 15
    separate = RetrievalMetric(distance=distance, ks=(1,), separate_gallery=True)
    result = separate(EvalOutputs(x, labels=labels, is_query=is_query))
    gallery = np.flatnonzero(~is_query)
    nearest = gallery[np.argmin(dist[np.ix_(is_query, ~is_query)], axis=1)]
    assert result.value == pytest.approx(np.mean(labels[nearest] == labels[is_query]))


# ---------------------------------------------------------------------- verification
def test_verification_hand_computed_two_folds():
    # Pair distances, two folds of four:
    #   fold 0: 0.1 T, 0.2 T, 0.9 F, 0.8 F      fold 1: 0.3 T, 0.7 F, 0.4 F, 0.6 T
    # Fold 0 held out: on fold 1 (sorted 0.3 T, 0.4 F, 0.6 T, 0.7 F) "same" for the closest
    #   0..4 pairs gets 2, 3, 2, 3, 2 right; the first best cut is after 0.3 -> threshold 0.35,
    #   which gets all of fold 0 right (accuracy 1).
    # Fold 1 held out: on fold 0 the cut between 0.2 and 0.8 gets 4 right -> threshold 0.5;
    #   fold 1 predicted T F T F against T F F T -> accuracy 0.5.
    # Mean 0.75; standard error std([1, 0.5], ddof=1) / sqrt(2) = 0.25; mean threshold 0.425.
    d = torch.tensor([0.1, 0.2, 0.9, 0.8, 0.3, 0.7, 0.4, 0.6], dtype=torch.float64)
    same = torch.tensor([True, True, False, False, True, False, False, True])
    accuracy, thresholds = verification_folds(d, same, folds=2)
    np.testing.assert_allclose(accuracy, [1.0, 0.5])
    np.testing.assert_allclose(thresholds, [0.35, 0.5])
    first = torch.zeros(8, 2, dtype=torch.float64)
    second = torch.stack([d, torch.zeros(8, dtype=torch.float64)], 1)  # euclidean distance = d
    result = VerificationMetric(distance="euclidean", folds=2)(
        EvalOutputs(first, pair_outputs=second, same=same)
    )
    assert result.primary == "accuracy" and result.value == pytest.approx(0.75) and result.count == 8
    assert result.std == pytest.approx(0.25) and result.values["threshold"] == pytest.approx(0.425)


def _released_face_protocol(dist, same, folds, thresholds):
    """UFO's face_evaluation.calculate_roc, re-written as a loop: sklearn KFold (no shuffle), per
    fold the first best grid threshold on the training folds, accuracy on the test fold."""
    accuracy = []
    for train, test in KFold(n_splits=folds, shuffle=False).split(np.arange(len(dist))):
        train_acc = [np.mean((dist[train] < t) == same[train]) for t in thresholds]
        best = thresholds[int(np.argmax(train_acc))]
        accuracy.append(np.mean((dist[test] < best) == same[test]))
    return np.array(accuracy)


def test_verification_matches_the_released_lfw_protocol():
    rng = np.random.default_rng(3)
    n = 203  # not a multiple of 10: the first 3 folds hold 21 pairs, as KFold's
    same = rng.random(n) < 0.5
    a = rng.normal(size=(n, 16))
    b = np.where(same[:, None], a + 0.8 * rng.normal(size=(n, 16)), rng.normal(size=(n, 16)))
    assert [f.tolist() for f in kfold_indices(n, 10)] == [
        t.tolist() for _, t in KFold(10, shuffle=False).split(np.arange(n))
    ]
    # The released recipe: L2-normalise, squared Euclidean distance, thresholds 0, 0.01, ..., 3.99.
    an = a / np.linalg.norm(a, axis=1, keepdims=True)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    squared = ((an - bn) ** 2).sum(1)
    grid = np.arange(0, 4, 0.01)
    released = _released_face_protocol(squared, same, 10, grid)
    np.testing.assert_allclose(verification_folds(squared, same, 10, thresholds=grid)[0], released)
    # The exact threshold search reaches the best training accuracy any threshold can reach, and
    # the cosine distance (= squared / 2) gives the same folds as the released distance.
    exact, chosen = verification_folds(squared, same, 10)
    for fold, test in enumerate(kfold_indices(n, 10)):
        train = np.setdiff1d(np.arange(n), test)
        candidates = np.append(np.unique(squared[train]), np.inf)
        best = max(np.mean((squared[train] < t) == same[train]) for t in candidates)
        assert np.mean((squared[train] < chosen[fold]) == same[train]) == pytest.approx(best)
    outputs = EvalOutputs(torch.tensor(a), pair_outputs=torch.tensor(b), same=torch.tensor(same))
    result = VerificationMetric()(outputs)  # cosine
    assert result.value == pytest.approx(exact.mean()) and result.value >= released.mean() - 0.02
    assert result.value > 0.7  # the same pairs are close: far above chance


def test_verification_needs_pairs():
    with pytest.raises(ValueError, match=r"needs the batch field\(s\) \['pair_outputs', 'same'\]"):
        VerificationMetric()(EvalOutputs(torch.eye(4), labels=torch.arange(4)))
    with pytest.raises(ValueError, match="10-fold evaluation needs .* at least 10 pairs, got 4"):
        VerificationMetric()(
            EvalOutputs(torch.eye(4), pair_outputs=torch.eye(4), same=torch.ones(4, dtype=bool))
        )


# ---------------------------------------------------------------------- registry and batches
def test_built_in_metrics_are_registered_through_entry_points():
    registered = {ep.name: ep.value for ep in entry_points(group=METRICS_ENTRY_POINT_GROUP)}
    assert METRICS_ENTRY_POINT_GROUP == "gpnas.metrics"
    assert {name: registered.get(name) for name in BUILT_INS} == {
        name: f"profilers:{cls.__name__}" for name, cls in BUILT_INS.items()
    }
    assert set(BUILT_INS) <= set(available_metrics())
    for name, cls in BUILT_INS.items():
        assert get_metric(name) is cls and cls.name == name
    assert create_metric("retrieval", ks=(5,)).ks == (5,)


def test_an_unknown_metric_is_named_with_the_known_ones():
    with pytest.raises(ValueError, match=r"no metric 'map@r' on this machine .*known: reid, retrieval, top1"):
        get_metric("map@r")


class _Half(TaskMetric):
    name = "half"

    def compute(self, out):
        raise NotImplementedError


def test_a_local_config_defines_metrics(tmp_path):
    config = tmp_path / "local.toml"
    config.write_text(f'[metrics]\nhalf = "{__name__}:_Half"\nnot-a-metric = "profilers:digits_batches"\n')
    local = LocalConfig.load(config)
    assert get_metric("half", local) is _Half and "half" in available_metrics(local)
    with pytest.raises(ValueError, match="'not-a-metric' is not a profilers.TaskMetric subclass"):
        get_metric("not-a-metric", local)
    # Settings name metrics, never code.
    with pytest.raises(ValueError, match="setting 'metric' .*import paths and file names are not accepted"):
        create_profiler(
            "supernet-eval", digits_space(), random_weights=True, data="digits", metric="profilers:ReIDMetric"
        )
    with pytest.raises(ValueError, match="setting 'distance' .*must be one of \\['cosine', 'euclidean'\\]"):
        create_profiler(
            "supernet-eval", digits_space(), random_weights=True, data="digits", distance="manhattan"
        )


def test_batches_are_eval_batches_mappings_or_pairs():
    x = torch.zeros(4, 1, 8, 8)
    assert as_eval_batch((x, torch.arange(4))).labels.tolist() == [0, 1, 2, 3]
    batch = as_eval_batch({"inputs": x, "labels": [0, 1, 0, 1], "is_query": [True, False, False, False]})
    assert batch.is_query.dtype == torch.bool and batch.labels.dtype == torch.int64
    with pytest.raises(ValueError, match="only keys of .*got \\['camera', 'inputs'\\]"):
        as_eval_batch({"inputs": x, "camera": [0, 0, 0, 0]})
    with pytest.raises(ValueError, match="field 'labels' must hold one entry per item \\(4\\)"):
        as_eval_batch((x, torch.arange(3)))
    with pytest.raises(ValueError, match="field 'same' must be booleans"):
        EvalBatch(x, pair_inputs=x, same=torch.ones(4))


def test_digits_eval_batches_carry_every_metrics_fields():
    batches = digits_eval_batches("sop")
    labels = torch.cat([b.labels for b in batches])
    cameras = torch.cat([b.cameras for b in batches])
    is_query = torch.cat([b.is_query for b in batches])
    same = torch.cat([b.same for b in batches])
    assert set(labels.tolist()) == set(range(10))  # a task that is not low/high: all ten digits
    assert len(labels) == sum(len(y) for t in DIGITS_TASKS for _, y in digits_batches(t))
    for digit in range(10):  # one query per identity and camera
        assert sorted(cameras[is_query & (labels == digit)].tolist()) == [0, 1, 2]
    assert 0.45 < float(same.float().mean()) < 0.55
    low = digits_eval_batches("low")
    assert torch.equal(torch.cat([b.inputs for b in low]), torch.cat([x for x, _ in digits_batches("low")]))


# ---------------------------------------------------------------------- spaces and supernet-eval
def test_spaces_name_the_metric_of_each_task():
    track2 = get_space("ufo-track2")
    assert {t: track2.evaluation_metric(t) for t in track2.tasks} == {
        "cplfw": "verification",
        "market1501": "reid",
        "dukemtmc": "reid",
        "msmt17": "reid",
        "veri": "reid",
        "vehicleid": "reid",
        "veriwild": "reid",
        "sop": "retrieval",
    }
    multipath = get_space("ufo2-multipath")
    assert [multipath.evaluation_metric(t) for t in ("face", "person", "product")] == [
        "verification",
        "reid",
        "retrieval",
    ]
    assert {digits_space().evaluation_metric(t) for t in DIGITS_TASKS} == {"top1"}
    assert isinstance(digits_space(), MultipathSpace)


@pytest.fixture
def track2_digits() -> Track2Space:
    return Track2Space(geometry=DIGITS_GEOMETRY)


def test_supernet_eval_scores_sop_by_recall_at_1(track2_digits):
    profiler = create_profiler("supernet-eval", track2_digits, random_weights=True, data="digits-ufo")
    sub = track2_digits.sample(1, seed=0)[0]
    result = profiler.score(sub, "sop")
    assert 0.0 <= result.value <= 1.0 and result.environment["task_metric"] == "retrieval"
    assert result.environment["metric_values"]["recall@1"] == result.value
    n_val = sum(len(y) for t in DIGITS_TASKS for _, y in digits_batches(t))
    assert result.repeats == result.environment["examples"] == n_val  # every image queries the others
    # The same number from the model's embeddings, by a brute-force nearest-neighbour search.
    model = profiler.supernet().extract(sub, task="sop").eval()
    batches = digits_eval_batches("sop")
    with torch.no_grad():
        emb = torch.cat([model(b.inputs) for b in batches]).double().numpy()
    labels = torch.cat([b.labels for b in batches]).numpy()
    dist = _np_distances(emb, emb, "cosine")
    np.fill_diagonal(dist, np.inf)
    assert result.value == pytest.approx(np.mean(labels[dist.argmin(1)] == labels))


def test_supernet_eval_scores_reid_and_verification_tasks(track2_digits):
    profiler = create_profiler(
        "supernet-eval", track2_digits, random_weights=True, data="digits-ufo", distance="euclidean"
    )
    sub = track2_digits.sample(1, seed=1)[0]
    reid = profiler.score(sub, "market1501")
    assert reid.environment["task_metric"] == "reid" and reid.environment["distance"] == "euclidean"
    assert 0.0 < reid.value <= 1.0 and reid.repeats == 30  # 3 queries per digit, all valid
    assert {"mAP", "rank1", "rank5", "mINP"} <= set(reid.environment["metric_values"])
    face = profiler.score(sub, "cplfw")
    assert face.environment["task_metric"] == "verification" and 0.0 <= face.value <= 1.0
    assert face.repeats == face.environment["examples"] > 400  # one pair per validation image


def test_the_metric_setting_overrides_the_spaces_choice(track2_digits):
    sub = track2_digits.sample(1, seed=1)[0]
    # market1501 is a re-id task, scored here by retrieval as the setting says.
    override = create_profiler(
        "supernet-eval", track2_digits, random_weights=True, data="digits-ufo", metric="retrieval"
    )
    assert override.score(sub, "market1501").environment["task_metric"] == "retrieval"
    # A task without a head cannot be scored by top-1 (its outputs are embeddings), a distance is
    # only for metrics that compare embeddings, and an unknown metric is named.
    top1 = create_profiler(
        "supernet-eval", track2_digits, random_weights=True, data="digits-ufo", metric="top1"
    )
    with pytest.raises(ValueError, match="task 'sop' .* has no classification head"):
        top1.score(sub, "sop")
    with pytest.raises(ValueError, match="metric 'top1' compares no embeddings"):
        create_profiler(
            "supernet-eval",
            track2_digits,
            random_weights=True,
            data="digits-ufo",
            metric="top1",
            distance="cosine",
        )
    with pytest.raises(ValueError, match="setting 'metric' .*no metric 'rank1'.*known: reid"):
        create_profiler(
            "supernet-eval", track2_digits, random_weights=True, data="digits-ufo", metric="rank1"
        )


def test_supernet_eval_keeps_top1_for_classification_tasks_and_retrieval_on_plain_digits():
    space = digits_space()
    sub = space.sample(1, seed=2)[0]
    profiler = create_profiler("supernet-eval", space, random_weights=True, data="digits")
    result = profiler.score(sub, "high")
    with torch.no_grad():
        x, y = (torch.cat(parts) for parts in zip(*digits_batches("high"), strict=True))
        expected = float((profiler.supernet()(x, sub, task="high").argmax(-1) == y).float().mean())
    assert result.environment["task_metric"] == "top1" and result.value == pytest.approx(expected)
    assert result.repeats == len(y) and result.std == pytest.approx(
        np.sqrt(expected * (1 - expected) / len(y))
    )
    # (inputs, labels) batches also serve retrieval: the digit classes are the identities.
    retrieval = create_profiler(
        "supernet-eval", space, random_weights=True, data="digits", metric="retrieval"
    ).score(sub, "high")
    assert 0.0 <= retrieval.value <= 1.0 and retrieval.repeats == len(y)
    with pytest.raises(ValueError, match=r"metric 'reid' needs the batch field\(s\) \['is_query'\]"):
        create_profiler("supernet-eval", space, random_weights=True, data="digits", metric="reid").score(
            sub, "high"
        )
