"""The cache of suite pretrainings on shared storage: resumable, first-wins, recorded, no lock."""
from __future__ import annotations

import json
import socket
import threading

import pytest
import torch

from spottune.pretraining import weights as pretrain
from spottune.pretraining import cache as pretrain_cache
from spottune.training import loop as training
from spottune.storage.claim import Claim, read_holder
from spottune.pretraining.cache import CorruptCache, SuitePretraining

SPEC = {"arch": "resnet26", "width": 0.25, "input_size": 32,
        "pretrained": {"kind": "suite", "dataset": "mini_source", "epochs": 2, "batch_size": 64,
                       "lr": 0.1, "weight_decay": 5e-4, "seed": 0, "max_images": 192}}


@pytest.fixture
def cache(monkeypatch, tmp_path) -> SuitePretraining:
    monkeypatch.setenv(pretrain_cache.CACHE_ENV, str(tmp_path))
    return SuitePretraining(SPEC)


class Interrupted(Exception):
    pass


@pytest.mark.slow
def test_an_interrupted_pretraining_resumes_to_the_weights_of_an_uninterrupted_one(cache, monkeypatch, tmp_path):
    real_train_epoch = training.train_epoch

    def stop_in_second_epoch(*args, **kwargs):
        if kwargs["epoch"] == 1:
            raise Interrupted
        return real_train_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "train_epoch", stop_in_second_epoch)
    with pytest.raises(Interrupted):
        pretrain.ensure_pretrained(SPEC, progress=False)
    assert not cache.complete and (cache.partial / "checkpoint.pt").exists()
    assert read_holder(cache.partial) is None  # the claim went with the process's pretraining
    monkeypatch.setattr(training, "train_epoch", real_train_epoch)
    assert pretrain.ensure_pretrained(SPEC, progress=False) is True
    resumed = cache.load()
    assert not cache.partial.exists()  # published: the partial checkpoints are gone

    monkeypatch.setenv(pretrain_cache.CACHE_ENV, str(tmp_path / "uninterrupted"))
    assert pretrain.ensure_pretrained(SPEC, progress=False) is True
    uninterrupted = SuitePretraining(SPEC).load()
    assert resumed["source"] == uninterrupted["source"]
    for name, tensor in uninterrupted["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], tensor), name


def test_publishing_is_first_wins_with_a_completion_record(cache):
    assert cache.record() is None and not cache.complete
    cache.folder.mkdir(parents=True)
    first, second = b"first weights", b"second weights"
    assert cache.publish(first, {"test_accuracy": 50.0}) is True
    record = json.loads(cache.record_path.read_text())
    assert record["bytes"] == len(first) and record["key"] == cache.key and record["spec"] == SPEC
    assert record["source"] == {"test_accuracy": 50.0} and record["pretrained_by"]["host"] == socket.gethostname()
    assert cache.publish(second, {"test_accuracy": 99.0}) is False  # a later finisher never replaces them
    assert cache.weights.read_bytes() == first and json.loads(cache.record_path.read_text()) == record
    assert sorted(p.name for p in cache.folder.iterdir()) == sorted([cache.weights.name, cache.record_path.name])


def test_weights_without_their_record_are_not_cached_and_a_size_mismatch_is_not_either(cache):
    cache.folder.mkdir(parents=True)
    cache.weights.write_bytes(b"half a file")  # never happens to a published file; no record: not cached
    assert not cache.complete
    cache.publish(b"weights", None)
    assert cache.weights.read_bytes() == b"half a file" and cache.complete  # the existing file is recorded
    cache.weights.write_bytes(b"changed afterwards!")
    assert not cache.complete


def test_a_file_changed_after_publishing_is_refused_naming_it(cache):
    cache.folder.mkdir(parents=True)
    cache.publish(b"0123456789", None)
    cache.weights.write_bytes(b"9876543210")  # same size, other content
    with pytest.raises(CorruptCache, match=f"{cache.weights}.*delete both files"):
        cache.load()


@pytest.mark.slow
def test_a_file_cached_before_records_existed_is_adopted_without_pretraining(cache, monkeypatch):
    assert pretrain.ensure_pretrained(SPEC, progress=False) is True
    weights = cache.weights.read_bytes()
    cache.record_path.unlink()  # as an earlier suite version left it
    monkeypatch.setattr(pretrain, "_pretrain", lambda *a, **k: pytest.fail("pretrained again"))
    assert pretrain.ensure_pretrained(SPEC, progress=False) is False
    assert cache.complete and cache.weights.read_bytes() == weights
    assert json.loads(cache.record_path.read_text())["adopted"] is True


def test_a_second_process_waits_for_the_pretraining_another_holds(cache, monkeypatch):
    """No lock: the claim of the pretraining's partial folder tells a second process to wait
    for the first to publish (here the holder is another thread of this live process)."""
    monkeypatch.setattr(pretrain, "WAIT_POLL_S", 0.05)
    monkeypatch.setattr(pretrain, "_pretrain", lambda *a, **k: pytest.fail("pretrained twice"))
    holder = Claim(cache.partial)
    published = threading.Event()

    def publish_later() -> None:
        published.wait(5)
        cache.publish(b"weights of the holder", {"test_accuracy": 1.0})
        holder.release()

    thread = threading.Thread(target=publish_later)
    thread.start()
    threading.Timer(0.3, published.set).start()
    assert pretrain.ensure_pretrained(SPEC, progress=False) is False
    thread.join()
    assert cache.weights.read_bytes() == b"weights of the holder"


def test_a_requeued_job_takes_over_the_claim_its_first_start_left_on_another_node(tmp_path, monkeypatch):
    folder = tmp_path / "partial"
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    with Claim(folder):
        record = json.loads((folder / "claim.json").read_text())
    assert record["job"] == "4242"
    record["host"] = "another-node"  # the job ran there before it was requeued onto this node
    (folder / "claim.json").write_text(json.dumps(record))
    assert read_holder(folder).stale()
    monkeypatch.setenv("SLURM_JOB_ID", "4243")  # another job's claim on another node is live
    assert not read_holder(folder).stale()
    monkeypatch.delenv("SLURM_JOB_ID")
    assert not read_holder(folder).stale()
    with Claim(folder.parent / "other"):
        assert json.loads((folder.parent / "other" / "claim.json").read_text())["job"] is None


@pytest.mark.parametrize("content", [b"", b"not a torch file", b"\x80\x04\x95\x05\x00cos\nsystem\n."])
def test_an_unreadable_or_hostile_weights_file_is_one_named_error(cache, content):
    """A file planted at the weights' name (no record: adopted; with a matching record: loaded)
    is refused with its path; nothing in it runs."""
    cache.folder.mkdir(parents=True)
    cache.weights.write_bytes(content)
    with pytest.raises(CorruptCache, match=f"{cache.weights}: not a pretraining the suite wrote"):
        cache.adopt()
    cache.publish(b"ignored: the planted file was there first", None)  # records the planted file
    with pytest.raises(CorruptCache, match=f"{cache.weights}: not a pretraining the suite wrote"):
        cache.load()


@pytest.mark.parametrize("text", ["[1, 2]", "{\"job_id\": \"7\", \"cache\": 3}", "{torn"])
def test_a_damaged_pretraining_job_record_is_one_named_error(tmp_path, text):
    """A pretraining is a run: its job's record is its folder's ``submitted.json``, which names the
    cache it publishes into; a record that does not is one error naming the file."""
    from spottune.launch.pretraining import cache_entry
    from spottune.pretraining.cache import pretraining_spec
    from spottune.storage.records import RecordError, RunFolder

    spec = pretraining_spec(SPEC)
    folder = RunFolder.of(tmp_path, spec)
    assert folder.path == tmp_path / "pretraining" / SuitePretraining(SPEC).key
    folder.path.mkdir(parents=True)
    (folder / "submitted.json").write_text(text)
    with pytest.raises(RecordError, match=str(folder / "submitted.json")):
        cache_entry(tmp_path, spec)
