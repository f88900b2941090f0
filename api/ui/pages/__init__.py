"""The web control plane's pages: one router module per page (none imports another)."""
