"""The application layer: the command line's jobs that wire the model, the planner and the envs.

The dependency direction (checked by `tests/test_architecture.py`):

    vjepa2.cli, vjepa2.app     application: commands, demo, evaluation harness, calibration
        |            |
    planning        envs       planner core (no env, no trainer) | tasks and log collection
        |            |
    vjepa2 model core          layers, models, masks, data, train, files, errors

Only this layer imports both `planning` and `envs`; the model core imports neither.
"""
