"""One server per port, and TLS, for the local server and its client.

Faults found by probing the server: two servers shared a port silently (gRPC's SO_REUSEPORT) and clients
got OK or NOT_FOUND at random; a port held by another program gave a gRPC traceback; there was
no TLS option although TF-Serving deployments use one.
"""
import datetime
import os
import shutil
import socket
import subprocess

import numpy as np
import pytest

from tfrf.serving import Client, LocalModelServer, PortInUseError, ServerUnavailableError

from helpers import free_port, make_inputs
from serving_helpers import install, serve_process, stop_process


def self_signed_certificate(directory, name="tfrf-test"):
    """(certificate, key) PEM paths of a certificate for localhost and 127.0.0.1, made with the
    cryptography package, else the openssl binary; skips when neither exists."""
    certificate, key = os.path.join(directory, f"{name}.crt"), os.path.join(directory, f"{name}.key")
    try:
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            pytest.skip("neither the cryptography package nor the openssl binary is available")
        subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", key, "-out", certificate, "-days", "1", "-subj", f"/CN={name}",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
        return certificate, key
    private_key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
               .public_key(private_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                           x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                              critical=False)
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True))
    with open(certificate, "wb") as stream:
        stream.write(builder.sign(private_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    with open(key, "wb") as stream:
        stream.write(private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return certificate, key


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tls")
    generator = install(1, root / "models" / "face")
    return {"dir": str(root / "models"), "generator": generator}


def test_tls_round_trip_and_untrusted_clients_refused(model_dir, tmp_path):
    certificate, key = self_signed_certificate(str(tmp_path))
    other_certificate, _ = self_signed_certificate(str(tmp_path), name="stranger")
    inputs = make_inputs(1, 2, seed=1)
    with LocalModelServer(model_dir["dir"], port=0, poll_seconds=0, tls_cert=certificate, tls_key=key) as server:
        for host in ("localhost", "127.0.0.1"):  # the certificate names both
            with Client(f"{host}:{server.port}", "face", timeout=30, tls_ca=certificate) as client:
                np.testing.assert_allclose(client.generate(**inputs), model_dir["generator"](inputs).numpy(),
                                           atol=1e-4, rtol=0)
        with Client(server.address, "face", timeout=10) as plain:  # no TLS: the handshake never happens
            with pytest.raises(ServerUnavailableError):
                plain.metadata()
        with Client(server.address, "face", timeout=10, tls_ca=other_certificate) as stranger:
            with pytest.raises(ServerUnavailableError):
                stranger.metadata()
        assert server.counters.get("requests", 0) == 2  # only the trusted clients got through


def test_tls_options_need_both_readable_files(model_dir, tmp_path):
    certificate, key = self_signed_certificate(str(tmp_path))
    with pytest.raises(ValueError, match="TLS needs both --tls-cert and --tls-key"):
        LocalModelServer(model_dir["dir"], tls_cert=certificate)
    with pytest.raises(FileNotFoundError, match="cannot read the TLS private key .*missing.key"):
        LocalModelServer(model_dir["dir"], tls_cert=certificate, tls_key=str(tmp_path / "missing.key"))
    with pytest.raises(FileNotFoundError, match="TLS CA certificate file .*missing.crt"):
        Client("localhost:1", "face", tls_ca=str(tmp_path / "missing.crt"))


@pytest.mark.slow
def test_one_server_per_port(model_dir, tmp_path):
    """`tfrf serve --tls-cert/--tls-key` holds its port; a second `tfrf serve` on it exits with
    status 2 and one line, and the first keeps answering every request."""
    certificate, key = self_signed_certificate(str(tmp_path))
    port = free_port()
    first, line = serve_process([model_dir["dir"], "--port", str(port), "--poll-seconds", "0",
                                 "--tls-cert", certificate, "--tls-key", key])
    try:
        assert line.startswith(f"tfrf serve: face v1 on 127.0.0.1:{port} (TLS)"), line
        second, second_line = serve_process([model_dir["dir"], "--port", str(port), "--poll-seconds", "0"])
        stderr = second.communicate(timeout=120)[1]
        assert second.returncode == 2 and second_line == ""
        assert [line for line in stderr.splitlines() if line.strip()] == [
            f"tfrf serve: port {port} on 127.0.0.1 is in use by another program (another tfrf serve or model "
            f"server?); stop it or choose another --port"]
        inputs = make_inputs(1, 1, seed=2)
        with Client(f"localhost:{port}", "face", timeout=30, tls_ca=certificate) as client:
            for _ in range(3):
                np.testing.assert_allclose(client.generate(**inputs), model_dir["generator"](inputs).numpy(),
                                           atol=1e-4, rtol=0)
    finally:
        stop_process(first)


@pytest.mark.slow
def test_port_held_by_another_program(model_dir):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        server = LocalModelServer(model_dir["dir"], port=port, poll_seconds=0)
        with pytest.raises(PortInUseError, match=f"port {port} on 127.0.0.1 is in use"):
            server.start()
        assert server.counters.get("load_attempts", 0) == 0  # refused before loading any model
        assert isinstance(PortInUseError("x"), OSError)
        process, line = serve_process([model_dir["dir"], "--port", str(port)])
        stderr = process.communicate(timeout=120)[1]
    assert process.returncode == 2 and line == ""
    assert len([line for line in stderr.splitlines() if line.strip()]) == 1
    assert stderr.startswith(f"tfrf serve: port {port} on 127.0.0.1 is in use")
