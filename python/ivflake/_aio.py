"""The coroutine `Index.search_async` returns.

The native call checks its arguments and copies the queries; this `async def`
starts the search when first awaited, so its asyncio future is made inside the
loop that awaits it. A future made at call time needs a running loop then,
which ``asyncio.run(index.search_async(xq, k))`` does not have yet.
"""

from typing import Any


async def search_async(pending: Any) -> Any:
    # Cancelling the task cancels the awaited future, and with it the search.
    return await pending.start()
