"""Prometheus from the Debian package, scraping the services' /metrics, alert rules beside it."""

from __future__ import annotations

import shutil

from .config import HOST, Ports, urls
from .part import Part
from .process import http_ok, say

# The scrape targets as written in deploy/prometheus/prometheus.yml, per port attribute.
PROMETHEUS_DEFAULT_TARGETS = {
    "gateway_admin": f"{HOST}:8001",
    "registry": f"{HOST}:8080",
    "aggregator": f"{HOST}:6066",
    "prometheus": f"{HOST}:9090",
}


def prometheus_config(template: str, ports: Ports) -> str:
    """The checked-in config with its scrape targets moved to the ports in use."""
    text = template
    for attr, default in PROMETHEUS_DEFAULT_TARGETS.items():
        text = text.replace(f"'{default}'", f"'{HOST}:{getattr(ports, attr)}'")
    return text


class Prometheus(Part):
    """Prometheus from the Debian package, scraping the services' /metrics."""

    name = "prometheus"

    @property
    def port(self) -> int:
        return self.ctx.ports.prometheus

    @property
    def address(self) -> str:
        return urls(self.ctx.ports)["PROMETHEUS_URL"]

    def what(self) -> str:
        return f"{self.address}/-/ready"

    def healthy(self) -> bool:
        return http_ok(f"{self.address}/-/ready")

    def launch(self) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            self.ctx.apt_install(["prometheus"], "Prometheus is not installed")
            if self.foreign():
                say(
                    f"  prometheus: the packaged server now answers on {self.port}; using it "
                    "(with its own /etc/prometheus config)"
                )
                return
            binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        home = self.ctx.local / "prometheus"
        (home / "data").mkdir(parents=True, exist_ok=True)
        template = (self.ctx.repo / "deploy" / "prometheus" / "prometheus.yml").read_text()
        config = home / "prometheus.yml"
        config.write_text(prometheus_config(template, self.ctx.ports))
        # rule_files in the config are relative to it: the alert rules travel beside it.
        shutil.copyfile(self.ctx.repo / "deploy" / "prometheus" / "alerts.yml", home / "alerts.yml")
        self.spawn(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address={HOST}:{self.port}",
                "--storage.tsdb.retention.time=7d",
            ],
            cwd=home,
        )
