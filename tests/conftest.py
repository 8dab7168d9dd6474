"""Every test process sees 4 CPU devices, so the multi-device paths run here.
Fixtures only; shared helper functions are in tests/helpers.py."""

import chex

chex.set_n_cpu_devices(4)

import pytest  # noqa: E402

# The slowest tests (end-to-end runs, resumes, notebooks, several processes),
# measured with --durations: `-m "not slow"` leaves them out of the README's
# test command, which stays within its time on 2 cores; `-m slow` runs them.
SLOW = frozenset({
    "tests/test_hierarchical_models.py::test_prediction_shapes[hpu_net]",
    "tests/test_hierarchical_models.py::test_prediction_shapes[phiseg]",
    "tests/test_geco.py::test_the_runner_trains_a_cvae_under_geco",
    "tests/test_geco.py::test_resume_after_a_kill_equals_an_uninterrupted_run",
    "tests/test_hierarchical_models.py::test_each_model_gets_every_ambiguity_figure_with_its_recipe[ssn]",
    "tests/test_hierarchical_models.py::test_each_model_gets_every_ambiguity_figure_with_its_recipe[hpu_net]",
    "tests/test_hierarchical_models.py::test_each_model_gets_every_ambiguity_figure_with_its_recipe[phiseg]",
    "tests/test_bbox.py::test_end_to_end_on_tiny_mnist[hybrid-class]",
    "tests/test_bbox.py::test_end_to_end_on_tiny_mnist[mdn-class]",
    "tests/test_bbox.py::test_one_and_four_devices_train_to_the_same_parameters",
    "tests/test_cli.py::test_sigkill_then_rerun_equals_uninterrupted_run",
    "tests/test_distrax.py::test_distrax_and_the_library_likelihood_give_the_same_figures[bernoulli]",
    "tests/test_distributed.py::test_a_kill_then_a_restart_of_both_processes_resumes",
    "tests/test_distributed.py::test_streamed_data_is_read_in_disjoint_shards_that_cover_the_epoch",
    "tests/test_distributed.py::test_two_processes_equal_one_with_the_same_global_batch[quadrant]",
    "tests/test_mnist_quadrant.py::test_each_model_trains_and_reports_every_estimator[cvae]",
    "tests/test_mnist_quadrant.py::test_each_model_trains_and_reports_every_estimator[gsnn]",
    "tests/test_mnist_quadrant.py::test_each_model_trains_and_reports_every_estimator[hybrid]",
    "tests/test_mnist_quadrant.py::test_joint_baseline_trains_inside_the_cvae_on_the_sohn_protocol",
    "tests/test_notebook.py::test_notebook_executes[bbox]",
    "tests/test_notebook.py::test_notebook_executes[mnist_quadrant]",
    "tests/test_notebook.py::test_notebook_executes[prob_unet]",
    "tests/test_notebook.py::test_notebook_executes[segmentation]",
    "tests/test_notebook.py::test_notebook_executes[your_own_cvae]",
    "tests/test_one_pass.py::test_one_pass_gradients_equal_the_three_apply_formulation[box cvae]",
    "tests/test_one_pass.py::test_one_pass_gradients_equal_the_three_apply_formulation[prob unet cvae]",
    "tests/test_one_pass.py::test_one_pass_gradients_equal_the_three_apply_formulation[quadrant cvae, joint baseline]",
    "tests/test_one_pass.py::test_one_pass_gradients_equal_the_three_apply_formulation[segmentation cvae, joint baseline]",
    "tests/test_one_pass.py::test_one_pass_gradients_equal_the_three_apply_formulation[segmentation gsnn S=2]",
    "tests/test_prob_unet.py::ModeCalibrationTest::test_samples_of_the_true_distribution_approach_it",
    "tests/test_prob_unet.py::ProbabilisticUNetTest::test_kl_analytic_matches_monte_carlo_on_the_model",
    "tests/test_prob_unet.py::test_bfloat16_loss_is_close_to_float32",
    "tests/test_prob_unet.py::test_end_to_end_on_tiny_mnist[sohn_cvae]",
    "tests/test_prob_unet.py::test_end_to_end_on_tiny_mnist[unet]",
    "tests/test_prob_unet.py::test_lidc_config_trains_on_a_generated_file",
    "tests/test_prob_unet.py::test_one_and_four_devices_train_to_the_same_parameters",
    "tests/test_researcher_api.py::test_a_toy_run_imports_no_tensorflow_and_writes_tensorboard",
    "tests/test_researcher_api.py::test_resume_with_changed_settings_is_refused_or_recorded",
    "tests/test_runner.py::test_run_rerun_changed_evaluator_and_resume[bbox]",
    "tests/test_runner.py::test_run_rerun_changed_evaluator_and_resume[mnist_label]",
    "tests/test_runner.py::test_run_rerun_changed_evaluator_and_resume[mnist_quadrant]",
    "tests/test_runner.py::test_run_rerun_changed_evaluator_and_resume[prob_unet]",
    "tests/test_runner.py::test_run_rerun_changed_evaluator_and_resume[segmentation]",
    "tests/test_runner.py::test_sigterm_saves_a_checkpoint_writes_no_results_and_the_rerun_resumes[bbox]",
    "tests/test_runner.py::test_sigterm_saves_a_checkpoint_writes_no_results_and_the_rerun_resumes[mnist_label]",
    "tests/test_runner.py::test_sigterm_saves_a_checkpoint_writes_no_results_and_the_rerun_resumes[prob_unet]",
    "tests/test_runner.py::test_sigterm_saves_a_checkpoint_writes_no_results_and_the_rerun_resumes[segmentation]",
    "tests/test_segmentation.py::GsnnObjectiveTest::test_single_sample_is_minus_log_likelihood_at_one_prior_draw",
    "tests/test_segmentation.py::test_cub_config_trains_a_few_steps_on_mock_data",
    "tests/test_segmentation.py::test_end_to_end_on_tiny_mnist[hybrid]",
    "tests/test_segmentation.py::test_one_and_four_devices_train_to_the_same_parameters",
    "tests/test_trainer.py::test_resume_after_a_signal_equals_uninterrupted[streaming-15]",
})


def pytest_collection_modifyitems(items):
  for item in items:
    if item.nodeid in SLOW:
      item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def tiny_mnist_dir(tmp_path_factory):
  """A TFDS `mnist` data_dir built by the offline builder: 400 train, 100 test."""
  from cvae_jax.data import offline_mnist  # pylint: disable=g-import-not-at-top
  from helpers import write_fake_mnist_pickle  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("tiny_mnist")
  pickle_path = write_fake_mnist_pickle(root / "fake.pkl.gz")
  data_dir = root / "tfds"
  offline_mnist.build_mnist(data_dir, pickle_path=pickle_path)
  return data_dir
