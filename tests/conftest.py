import os

# No test may reach the network: the Hub is unreachable on CI machines and a load that
# tries it must fail fast instead of retrying for half a minute.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

# Tests use tiny models: one thread is fastest, and on a shared 2-core machine more threads make
# some kernels (LSTMs in the codec) hundreds of times slower through oversubscription.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield
