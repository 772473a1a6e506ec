"""Policy and reward adapters over the official `openai.AsyncOpenAI` client (DESIGN §5).

`PolicyClient.expand` generates the children of one node through /v1/completions;
`make_reward_client(protocol, url)` builds the adapter that scores a sibling group. Both retry
transient failures (see `retry.RetryPolicy`), cap requests in flight per server, and raise
`EndpointError` with the server and its answer when they give up.
"""

from rebase_cli.clients.policy import PolicyClient
from rebase_cli.clients.retry import RetryPolicy
from rebase_cli.clients.reward import RewardClient, make_reward_client

__all__ = ["PolicyClient", "RetryPolicy", "RewardClient", "make_reward_client"]
