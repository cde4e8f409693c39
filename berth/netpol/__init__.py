"""NetworkPolicy enforcement on a node: objects -> validated model -> one nftables table."""
