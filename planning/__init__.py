"""Latent-space planning with a world model: CEM, energies, MPC and the Planner API."""
