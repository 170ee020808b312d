"""The ground floor for bytes on disk and on the wire: atomic writes (`files.atomic`),
cross-process locks (`files.lock`) and reading an image source, a local path or an
http(s) URL, within limits (`files.fetch`).

Every layer may use it; it uses nothing of Lookalike's but `config` and `errors`."""
