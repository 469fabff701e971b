"""Adapter plugins: microblog sources and e-government ticket systems (see ``adapters.base``)."""
