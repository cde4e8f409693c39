"""The node's service proxy: Services + ready endpoints rendered into one nftables table.

:func:`berth.proxy.render.render_ruleset` is pure (golden-tested); :class:`berth.proxy.apply.
NftApplier` replaces the table atomically with ``nft -f``. Standard library only.
"""
