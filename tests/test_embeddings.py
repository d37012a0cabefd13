"""Unit tests of llmlab.embeddings: the small word2vec of module 06, on tiny made-up texts."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from llmlab import embeddings
from llmlab.embeddings import (
    SkipGram,
    TrainingConfig,
    Vocabulary,
    WordVectors,
    keep_probabilities,
    noise_distribution,
    sgns_loss,
    skipgram_pairs,
    subsample,
    tokenize,
    train_skipgram,
    train_word_vectors,
)

ANIMALS = ["cat", "dog", "horse", "cow"]
FRUITS = ["apple", "banana", "cherry", "grape"]


def two_topic_text(n_sentences: int = 800, seed: int = 0) -> str:
    """Sentences about animals or about fruit: words of a group share their contexts."""
    rng = np.random.default_rng(seed)
    templates = {
        "animal": ["the {} runs across the field", "a hungry {} sleeps in the barn",
                   "my {} barks and runs"],
        "fruit": ["she eats a ripe {} today", "the sweet {} grows on a tree",
                  "a fresh {} tastes sweet"],
    }
    sentences = []
    for _ in range(n_sentences):
        topic, words = ("animal", ANIMALS) if rng.random() < 0.5 else ("fruit", FRUITS)
        template = templates[topic][rng.integers(3)]
        sentences.append(template.format(words[rng.integers(len(words))]))
    return ". ".join(sentences)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: extra threads only wait for each other (and on a shared 2-core machine,
    oversubscription makes torch many times slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


SMALL = TrainingConfig(min_count=1, dim=16, window=2, negatives=3, subsample=None, epochs=4,
                       batch_size=256, lr=0.02, seed=0)


@pytest.fixture(scope="module")
def two_topic_training():
    tokens = tokenize(two_topic_text())
    vocab = Vocabulary.build(tokens, min_count=1)
    model, losses = train_skipgram(vocab.encode(tokens), vocab.counts, SMALL, progress=False)
    return vocab, model, losses


def test_tokenize_lowercases_and_keeps_words_with_digits():
    assert tokenize("The __init__ method, float64 & 3 Dogs!") == [
        "the", "init", "method", "float64", "dogs"]
    assert tokenize("") == []


def test_vocabulary_orders_by_count_then_alphabetically_and_drops_rare_words():
    vocab = Vocabulary.build("b a c a b d a e e".split(), min_count=2)
    assert vocab.words == ("a", "b", "e")
    assert vocab.counts.tolist() == [3, 2, 2] and vocab.counts.dtype == np.int64
    assert len(vocab) == 3 and "e" in vocab and "c" not in vocab
    assert vocab.encode("e c a zzz b".split()).tolist() == [2, 0, 1]
    with pytest.raises(ValueError):
        Vocabulary.build(["a"], min_count=0)


def test_keep_probabilities_follow_the_word2vec_rule():
    counts = np.array([9000, 900, 90, 10])
    keep = keep_probabilities(counts, threshold=0.01)
    f = counts / counts.sum()
    expected = np.minimum(1.0, np.sqrt(0.01 / f) + 0.01 / f)
    np.testing.assert_allclose(keep, expected)
    assert keep[0] < keep[1] < 1.0 and keep[-1] == 1.0
    ids = np.repeat(np.arange(4), counts)
    kept = subsample(ids, counts, 0.01, np.random.default_rng(0))
    assert np.all(np.diff(kept) >= 0), "subsampling keeps the order"
    assert np.sum(kept == 3) == 10 and np.sum(kept == 0) < 2000


def brute_force_pairs(ids, window):
    return sorted((ids[i], ids[j]) for i in range(len(ids)) for j in range(len(ids))
                  if i != j and abs(i - j) <= window)


@pytest.mark.parametrize("n, window", [(10, 2), (5, 1), (3, 5), (1, 3), (0, 2)])
def test_skipgram_pairs_are_every_pair_within_the_window(n, window):
    ids = np.arange(100, 100 + n)
    centres, contexts = skipgram_pairs(ids, window)
    assert centres.dtype == np.int64 and contexts.dtype == np.int64
    assert sorted(zip(centres.tolist(), contexts.tolist(), strict=True)) == \
        brute_force_pairs(ids.tolist(), window)


def test_random_windows_give_a_subset_with_near_pairs_favoured():
    ids = np.arange(2000)
    centres, contexts = skipgram_pairs(ids, 4, np.random.default_rng(0))
    distance = np.abs(centres - contexts)
    assert distance.min() >= 1 and distance.max() <= 4
    counts = np.bincount(distance)[1:]
    assert np.all(np.diff(counts) < 0), "nearer pairs are more frequent"
    again = skipgram_pairs(ids, 4, np.random.default_rng(0))
    np.testing.assert_array_equal(again[0], centres)
    with pytest.raises(ValueError):
        skipgram_pairs(ids, 0)


def test_noise_distribution_is_the_unigram_to_the_three_quarters():
    p = noise_distribution(np.array([16, 1, 0]))
    np.testing.assert_allclose(p, np.array([8.0, 1.0, 0.0]) / 9.0)
    assert p.dtype == np.float64


def test_sgns_loss_equals_the_formula():
    gen = torch.Generator().manual_seed(0)
    u, v = torch.randn(6, 4, generator=gen), torch.randn(6, 4, generator=gen)
    n = torch.randn(6, 3, 4, generator=gen)
    U, Vv, N = u.double().numpy(), v.double().numpy(), n.double().numpy()

    def log_sigmoid(x):
        return -np.logaddexp(0.0, -x)

    manual = -(log_sigmoid(np.sum(U * Vv, axis=1))
               + log_sigmoid(-np.einsum("bkd,bd->bk", N, U)).sum(axis=1)).mean()
    loss = sgns_loss(u, v, n)
    assert loss.shape == ()
    assert loss.item() == pytest.approx(manual, rel=1e-6)
    huge = sgns_loss(torch.full((1, 2), 100.0), torch.full((1, 2), -100.0),
                     torch.full((1, 1, 2), 100.0))
    assert torch.isfinite(huge) and huge.item() == pytest.approx(40000.0)


def test_skipgram_starts_like_word2vec():
    model = SkipGram(50, 8, generator=torch.Generator().manual_seed(0))
    assert torch.all(model.context.weight == 0)
    assert model.centre.weight.abs().max() <= 0.5 / 8
    ids = torch.tensor([3, 1, 3])
    loss = model(ids, torch.tensor([0, 2, 4]), torch.tensor([[5, 6], [7, 8], [9, 9]]))
    assert loss.item() == pytest.approx(3 * np.log(2.0)), "zero context vectors: every score is 0"


def test_embedding_lookup_equals_one_hot_times_the_table():
    model = SkipGram(12, 5, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        model.context.weight.normal_(generator=torch.Generator().manual_seed(2))
    ids = torch.tensor([[0, 11, 3], [3, 3, 7]])
    table = model.context.weight
    one_hot = F.one_hot(ids, num_classes=12).to(table.dtype)
    torch.testing.assert_close(model.context(ids), one_hot @ table)
    # the gradients agree too: a repeated id collects the gradient of every occurrence
    model.context(ids).sum().backward()
    lookup_grad = table.grad.clone()
    table.grad = None
    (one_hot @ table).sum().backward()
    torch.testing.assert_close(table.grad, lookup_grad)
    assert lookup_grad[3].tolist() == [3.0] * 5


def test_training_lowers_the_loss_and_groups_words_by_topic(two_topic_training):
    vocab, model, losses = two_topic_training
    assert losses.dtype == np.float64 and np.all(np.isfinite(losses))
    assert losses[-10:].mean() < 0.7 * losses[:10].mean()
    vectors = WordVectors(vocab.words, model.centre.weight.detach().numpy())
    for group, other in [(ANIMALS, FRUITS), (FRUITS, ANIMALS)]:
        for word in group:
            same = np.mean([vectors.similarity(word, w) for w in group if w != word])
            different = np.mean([vectors.similarity(word, w) for w in other])
            assert same > different + 0.3, word


def test_training_is_deterministic_given_the_seed(two_topic_training):
    vocab, model, losses = two_topic_training
    tokens = tokenize(two_topic_text())
    again_model, again_losses = train_skipgram(vocab.encode(tokens), vocab.counts, SMALL,
                                               progress=False)
    np.testing.assert_array_equal(again_losses, losses)
    assert torch.equal(again_model.centre.weight, model.centre.weight)
    other = TrainingConfig(**{**SMALL.__dict__, "seed": 1, "epochs": 1})
    _, other_losses = train_skipgram(vocab.encode(tokens), vocab.counts, other, progress=False)
    assert not np.array_equal(other_losses, losses[: len(other_losses)])


def test_subsampling_and_batches_give_the_expected_number_of_steps():
    tokens = tokenize(two_topic_text(300))
    vocab = Vocabulary.build(tokens, min_count=1)
    config = TrainingConfig(**{**SMALL.__dict__, "subsample": 1e-2, "epochs": 2})
    model, losses = train_skipgram(vocab.encode(tokens), vocab.counts, config, progress=False)
    full_epoch = len(skipgram_pairs(vocab.encode(tokens), config.window)[0])
    assert 0 < len(losses) < 2 * np.ceil(full_epoch / config.batch_size)


def hand_made_vectors() -> WordVectors:
    words = ("king", "queen", "man", "woman", "apple", "zero")
    vectors = np.array([[3.0, 3.0, 0.1], [3.0, -3.0, 0.1], [1.0, 1.0, 0.0], [1.0, -1.0, 0.0],
                        [0.0, 0.0, 5.0], [0.0, 0.0, 0.0]])
    return WordVectors(words, vectors)


def test_word_vectors_are_unit_length_and_copied():
    raw = np.array([[3.0, 4.0], [0.0, 0.0]])
    vectors = WordVectors(("a", "b"), raw)
    np.testing.assert_allclose(vectors["a"], [0.6, 0.8], rtol=1e-6)
    assert np.all(vectors["b"] == 0), "a zero vector stays zero"
    assert raw[0, 0] == 3.0, "the caller's array is not changed"
    assert vectors.vectors.dtype == np.float32 and vectors.dim == 2 and len(vectors) == 2
    with pytest.raises(KeyError):
        vectors["c"]
    with pytest.raises(ValueError):
        WordVectors(("a",), raw)


def test_most_similar_excludes_the_query_and_ranks_by_cosine():
    vectors = hand_made_vectors()
    neighbours = vectors.most_similar("king", k=3)
    words = [w for w, _ in neighbours]
    assert "king" not in words
    assert words[0] == "man"
    sims = [s for _, s in neighbours]
    assert sims == sorted(sims, reverse=True)
    assert sims[0] == pytest.approx(vectors.similarity("king", "man"))
    assert len(vectors.most_similar("king", k=100)) == len(vectors) - 1


def test_nearest_breaks_ties_towards_the_lower_row_and_honours_exclude():
    vectors = WordVectors(("a", "b", "c", "d"), np.array([[1.0, 0], [0, 1.0], [2.0, 0], [1.0, 0]]))
    assert [w for w, _ in vectors.nearest(np.array([1.0, 0.0]), k=3)] == ["a", "c", "d"]
    assert [w for w, _ in vectors.nearest(np.array([1.0, 0.0]), k=2, exclude=["a", "x"])] == [
        "c", "d"]
    with pytest.raises(ValueError):
        vectors.nearest(np.zeros(3))


def test_analogy_by_vector_arithmetic():
    vectors = hand_made_vectors()
    assert vectors.analogy("man", "woman", "king")[0][0] == "queen"
    assert vectors.analogy("king", "man", "queen")[0][0] == "woman"
    answers = [w for w, _ in vectors.analogy("man", "woman", "king", k=10)]
    assert not {"man", "woman", "king"} & set(answers)


def test_sentence_vector_is_the_mean_of_the_known_unit_vectors():
    vectors = hand_made_vectors()
    expected = (vectors["king"] + vectors["apple"] + vectors["king"]) / 3
    np.testing.assert_allclose(vectors.sentence_vector("King, unknown APPLE king"), expected,
                               rtol=1e-6)
    np.testing.assert_allclose(vectors.sentence_vector(["king", "apple", "king"]), expected,
                               rtol=1e-6)
    empty = vectors.sentence_vector("nothing known here")
    assert empty.shape == (3,) and np.all(empty == 0)


def test_save_and_load_round_trip(tmp_path):
    vectors = hand_made_vectors()
    vectors.save(tmp_path / "v.npz")
    loaded = WordVectors.load(tmp_path / "v.npz")
    assert loaded.words == vectors.words
    np.testing.assert_array_equal(loaded.vectors, vectors.vectors)


def test_train_word_vectors_caches_by_text_and_config(tmp_path, monkeypatch):
    monkeypatch.setattr(embeddings, "EMBEDDINGS_CACHE", tmp_path)
    text = two_topic_text(200)
    config = TrainingConfig(**{**SMALL.__dict__, "epochs": 1})
    vectors, losses = train_word_vectors(text, config, progress=False)
    assert len(list(tmp_path.glob("*.npz"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("a cached result must not be trained again")

    monkeypatch.setattr(embeddings, "train_skipgram", fail)
    cached, cached_losses = train_word_vectors(text, config, progress=False)
    assert cached.words == vectors.words
    np.testing.assert_array_equal(cached.vectors, vectors.vectors)
    np.testing.assert_array_equal(cached_losses, losses)
    with pytest.raises(AssertionError):
        train_word_vectors(text, TrainingConfig(**{**config.__dict__, "seed": 5}), progress=False)
    with pytest.raises(AssertionError):
        train_word_vectors(text + " cat", config, progress=False)
