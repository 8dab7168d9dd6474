"""The Prob U-Net table: its wall time per row, from a run's history, and one
colour per model across the panels of its GED-vs-S curves."""

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


def test_a_run_keeps_its_colour_in_every_panel():
  """The unbiased panel lacks runs the other panel has; each label is drawn
  in one colour in both."""
  from cvae_jax import plotting  # pylint: disable=g-import-not-at-top
  xs = [1, 4, 16]
  curves = {"literature": {"U-Net": (xs, [0.7] * 3), "HPU-Net": (xs, [0.9, 0.4, 0.2]),
                           "SSN": (xs, [0.9, 0.4, 0.3])},
            "unbiased": {"HPU-Net": (xs[1:], [0.02, 0.01]), "SSN": (xs[1:], [0.03, 0.03])}}
  figure = plotting.curves_figure(curves, {"unbiased": 0.002}, log_x=True)
  colours = [{line.get_label(): line.get_color() for line in ax.get_lines()}
             for ax in figure.axes]
  assert set(colours[0]) == {"U-Net", "HPU-Net", "SSN"}
  for label in ("HPU-Net", "SSN"):
    assert colours[1][label] == colours[0][label]
  assert len(set(colours[0].values())) == 3
