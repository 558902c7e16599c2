"""Where the delivery policies were first written; they now live in :mod:`simulator.delivery`.

The checks' context and the settings (layers below the engine) need them too, so the module
moved to the layer ``simulator.resend`` held. Import from :mod:`simulator.delivery`.
"""

from simulator.delivery import *  # noqa: F403
