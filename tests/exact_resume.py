"""Test helper (not a test module): a run stopped at a checkpoint and resumed must end bit-identical to the same run
straight through. Used by the trainers' resume tests."""
import torch


def assert_resume_is_exact(make_trainer, checkpoint, stop_after: int, straight=None):
    """``make_trainer()`` builds a fresh trainer of one configuration. Trains one straight through (unless
    ``straight``, already trained, is given), one stopped after ``stop_after`` iterations with a checkpoint at
    ``checkpoint``, and a third resumed from it; asserts equal model states. Returns (straight, resumed)."""
    if straight is None:
        straight = make_trainer()
        straight.train()
    first = make_trainer()
    first.train(checkpoint_path=checkpoint, stop_after=stop_after)
    assert first.iteration == stop_after and not first.finished
    second = make_trainer()
    second.load_checkpoint(checkpoint)
    assert second.iteration == stop_after
    second.train()
    a, b = straight.model.state_dict(), second.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    return straight, second
