"""Reference clients for the protocols Yitong offers to systems that are not OIDC clients."""
