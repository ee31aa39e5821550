"""bilayer.train.state: a run's state round-trips exactly, old states load, damaged ones are named."""

from __future__ import annotations

import pytest
import torch

from bilayer.errors import InputFileError
from bilayer.train.state import STATE_FILE, TrainState, load_state, save_state


def test_old_training_states_without_a_clock_still_resume(tmp_path):
    save_state(tmp_path, TrainState(2, 4, 0.5, [], {}, {}, {}, seconds=12.5))
    assert load_state(tmp_path).seconds == 12.5
    payload = torch.load(tmp_path / STATE_FILE, weights_only=True)
    del payload["seconds"]
    torch.save(payload, tmp_path / STATE_FILE)
    assert load_state(tmp_path).seconds == 0.0 and load_state(tmp_path).epoch == 2


def test_a_state_round_trips_exactly_and_replaces_the_previous_one(tmp_path):
    assert load_state(tmp_path) is None  # a fresh run
    network = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([0.5, -1.0])}
    optimizer = {"state": {0: {"momentum_buffer": torch.ones(2, 3)}}, "param_groups": [{"lr": 0.01, "params": [0]}]}
    history = [{"epoch": 1, "train_loss": 0.75, "val_dice": None}, {"epoch": 2, "train_loss": 0.5}]
    state = TrainState(2, 40, 0.25, history, {"epochs": 10, "network": {"filters": [8, 16]}}, network, optimizer,
                       scaler={"scale": 1024.0}, rng=torch.get_rng_state(), seconds=61.5)
    assert save_state(tmp_path, state) == tmp_path / STATE_FILE
    back = load_state(tmp_path)
    assert (back.epoch, back.step, back.best_val_loss, back.seconds) == (2, 40, 0.25, 61.5)
    assert back.history == history and back.config == state.config and back.scaler == {"scale": 1024.0}
    assert all(torch.equal(back.network[k], v) for k, v in network.items())
    assert torch.equal(back.optimizer["state"][0]["momentum_buffer"], torch.ones(2, 3))
    assert torch.equal(back.rng, state.rng)
    save_state(tmp_path, TrainState(3, 60, float("inf"), history, {}, network, optimizer))
    assert load_state(tmp_path).epoch == 3 and load_state(tmp_path).best_val_loss == float("inf")
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATE_FILE]  # replaced, nothing else left


def test_a_damaged_state_is_an_input_error_naming_the_file_and_the_fix(tmp_path):
    (tmp_path / STATE_FILE).write_bytes(b"not a torch file")
    with pytest.raises(InputFileError,
                       match=r"(?s)state\.pt is not a readable training state .*remove it to start the run afresh"):
        load_state(tmp_path)
    torch.save({"format": "something-else"}, tmp_path / STATE_FILE)
    with pytest.raises(InputFileError, match="not a training state"):
        load_state(tmp_path)
