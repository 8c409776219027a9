"""MuJoCo manipulation tasks with goal images, scene variations and scripted policies."""
import os

# Headless rendering by default: MuJoCo picks its GL backend at import time.
if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "egl"
