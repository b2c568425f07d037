"""Internals of the SGLang test stand-in (not SGLang): settings, flags, checks, HTTP server, rendezvous."""
