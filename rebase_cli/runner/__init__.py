"""Search orchestration: configuration, run set-up and resume, the async level loop."""
