"""A CPU-only simulator of SGLang policy and PRM servers (DESIGN §6).

It speaks the real wire protocols over real HTTP, builds its steps from the datasets'
reference solutions, and can model a GPU's latency and capacity and inject faults. Every
model id it reports starts with `sim-`, so results obtained through it are labelled simulated.

    from rebase_cli.sim import SimConfig, start_in_thread
    with start_in_thread(SimConfig(role="both")) as server:
        ...  # openai.OpenAI(base_url=server.url + "/v1", api_key="x")
"""

from rebase_cli.sim.config import MODEL_PREFIX, FaultConfig, LatencyConfig, SimConfig

__all__ = [
    "MODEL_PREFIX",
    "FaultConfig",
    "LatencyConfig",
    "SimConfig",
    "create_app",
    "is_simulated_model",
    "start_in_thread",
]


def is_simulated_model(model_id: str | None) -> bool:
    """Whether a model id reported by a server marks it as this simulator."""
    return bool(model_id) and model_id.startswith(MODEL_PREFIX)  # type: ignore[union-attr]


def __getattr__(name: str):  # lazy: keep `import rebase_cli.sim` free of the web stack
    if name == "create_app":
        from rebase_cli.sim.app import create_app

        return create_app
    if name == "start_in_thread":
        from rebase_cli.sim.inprocess import start_in_thread

        return start_in_thread
    raise AttributeError(name)
