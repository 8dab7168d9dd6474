"""The Prob U-Net table's wall time per row, from a run's history."""

from benchmarks import prob_unet_table


def _segment(start, end, seconds=None):
  return {"from_step": start, "to_step": end,
          **({} if seconds is None else {"seconds": seconds})}


RESULTS = {"eval_seconds": {"samples": 30.0, "modes": 10.0},
           "train_seconds_this_run": 500.0}


def test_every_timed_segment_and_the_evaluation_add_up():
  history = [_segment(0, 100, 200.0), _segment(100, 300, 400.0)]
  assert prob_unet_table.wall_seconds(RESULTS, 0.0, history) == (640.0, 0)


def test_segments_without_seconds_are_left_out_and_counted():
  history = [_segment(0, 297), _segment(297, 6248, 2525.0)]
  assert prob_unet_table.wall_seconds(RESULTS, 0.0, history) == (2565.0, 297)
  record = {"wall_seconds": 2565.0, "untimed_steps": 297}
  assert prob_unet_table._wall_time(record) == "42.8 min + 297 untimed steps"


def test_a_history_without_seconds_falls_back_to_the_last_invocation():
  history = [_segment(0, 300)]
  assert prob_unet_table.wall_seconds(RESULTS, 0.0, history) == (540.0, 0)
  assert prob_unet_table.wall_seconds(RESULTS, 900.0, history) == (900.0, 0)
  resumed = {**RESULTS, "train_seconds_this_run": 5.0}  # Trained elsewhere.
  assert prob_unet_table.wall_seconds(resumed, 0.0, history) == (None, 0)
  assert prob_unet_table._wall_time({"wall_seconds": None}) == "n/a"
