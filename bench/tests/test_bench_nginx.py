"""The reference nginx gets one worker, no access log and a keep-alive pool to the upstream."""

from pathlib import Path

import pytest

from bench.nginx import host_port, render_config


def test_config_proxies_to_a_keepalive_pool_on_loopback() -> None:
    config = render_config(listen_port=18080, upstream="127.0.0.1:8090", workdir=Path("/w"))
    assert "worker_processes 1;" in config
    assert "access_log off;" in config
    assert "listen 127.0.0.1:18080;" in config
    assert "server 127.0.0.1:8090;" in config
    assert "keepalive 64;" in config
    assert "proxy_http_version 1.1;" in config
    assert 'proxy_set_header Connection "";' in config
    assert "pid /w/nginx.pid;" in config
    assert config.count("{") == config.count("}")


def test_host_port_of_an_http_url() -> None:
    assert host_port("http://127.0.0.1:8090") == "127.0.0.1:8090"
    assert host_port("http://localhost/") == "localhost:80"
    with pytest.raises(ValueError, match="not an http URL"):
        host_port("127.0.0.1:8090")
