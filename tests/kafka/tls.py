#!/usr/bin/python3
"""
tls.py - a throwaway PKI for the tests' TLS listeners, made in a directory of the caller's.

Uses python3-cryptography (Debian's package; scripts/install-deps.sh installs it). Everything is
made at once by Pki(directory), in about 0.1 s; nothing is read from or written to anywhere else.

    pki = tls.Pki("/tmp/x/pki")
    pki.ca_cert            the CA (PEM): librdkafka's ssl.ca.location, Kafka's PEM truststore
    pki.broker_cert/_key   the broker's certificate, signed by the CA, for CN=localhost with the
                           SANs IP:127.0.0.1 and DNS:localhost (librdkafka >= 2.0 checks the host
                           name: ssl.endpoint.identification.algorithm=https is its default)
    pki.broker_keystore    the same key and chain as PKCS#12 (password pki.password): Kafka's
                           ssl.keystore.location
    pki.client_cert/_key   a client certificate signed by the CA (CN=mqk-client): mutual TLS
    pki.expired_cert/_key  a client certificate signed by the CA that expired yesterday
                           (valid from 30 days ago until 1 day ago, CN=mqk-expired)
    pki.other_ca_cert      a second CA that signed nothing of the broker's: a client trusting
                           only it must reject the broker
    pki.other_client_cert/_key  a client certificate signed by that second CA (CN=mqk-stranger):
                           a mutual-TLS listener must reject it
    pki.rdkafka(client="client")  librdkafka's ssl.* properties trusting the CA and, unless
                           client=None, presenting that client's certificate

Keys are ECDSA P-256 (RSA 2048 took 2 s for the six keys), unencrypted PKCS#8 PEM (librdkafka
reads them without a password). Every file is written with mode 0600 in the given directory,
which is created if missing. Certificates are valid from an hour ago (clock skew) for 30 days,
except the expired one.

As a command, `python3 tests/kafka/tls.py DIR` makes a PKI in DIR and prints its file names.
"""

import datetime
import ipaddress
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PASSWORD = "mqk-test-pass"  # the PKCS#12 keystore's (and its key's) password


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mosquitto-kafka tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def _pem_cert(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class Cert:
    """One certificate with its key: .cert and .key (objects), .cert_path and .key_path (PEM)."""

    def __init__(self, cert, key, cert_path, key_path):
        self.cert, self.key, self.cert_path, self.key_path = cert, key, cert_path, key_path


class Pki:
    """A CA, the broker's certificate, client certificates (valid, expired, foreign) and a
    second CA, as PEM files (and the broker's PKCS#12 keystore) in directory."""

    def __init__(self, directory, now=None):
        self.dir = os.path.abspath(directory)
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        self.password = PASSWORD
        self.now = now or datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        ca = self.make_ca("ca", "mqk-test-ca")
        other = self.make_ca("other-ca", "mqk-other-ca")
        self.ca_cert = ca.cert_path
        self.other_ca_cert = other.cert_path
        broker = self.issue(ca, "broker", "localhost", server=True)
        self.broker_cert, self.broker_key = broker.cert_path, broker.key_path
        self.broker_keystore = _write(
            os.path.join(self.dir, "broker.p12"),
            pkcs12.serialize_key_and_certificates(
                b"broker", broker.key, broker.cert, [ca.cert],
                serialization.BestAvailableEncryption(PASSWORD.encode())))
        client = self.issue(ca, "client", "mqk-client")
        self.client_cert, self.client_key = client.cert_path, client.key_path
        expired = self.issue(ca, "expired", "mqk-expired",
                             not_before=self.now - datetime.timedelta(days=30),
                             not_after=self.now - datetime.timedelta(days=1))
        self.expired_cert, self.expired_key = expired.cert_path, expired.key_path
        stranger = self.issue(other, "other-client", "mqk-stranger")
        self.other_client_cert, self.other_client_key = stranger.cert_path, stranger.key_path
        self._ca = ca

    @classmethod
    def load(cls, directory):
        """The Pki an earlier Pki(directory) wrote (paths only: nothing is made or changed;
        issue() needs the CA objects and is not available)."""
        self = cls.__new__(cls)
        self.dir = os.path.abspath(directory)
        self.password = PASSWORD
        for attr, name in (("ca_cert", "ca.pem"), ("other_ca_cert", "other-ca.pem"),
                           ("broker_cert", "broker.pem"), ("broker_key", "broker.key"),
                           ("broker_keystore", "broker.p12"), ("client_cert", "client.pem"),
                           ("client_key", "client.key"), ("expired_cert", "expired.pem"),
                           ("expired_key", "expired.key"),
                           ("other_client_cert", "other-client.pem"),
                           ("other_client_key", "other-client.key")):
            path = os.path.join(self.dir, name)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"no PKI in {self.dir}: {path} is missing")
            setattr(self, attr, path)
        return self

    def make_ca(self, name, cn):
        """A self-signed CA: name.pem and name.key in the directory."""
        key = _key()
        cert = (x509.CertificateBuilder()
                .subject_name(_name(cn)).issuer_name(_name(cn))
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(self.now - datetime.timedelta(hours=1))
                .not_valid_after(self.now + datetime.timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                             crl_sign=True, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False,
                                             key_agreement=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .sign(key, hashes.SHA256()))
        return Cert(cert, key, _write(os.path.join(self.dir, f"{name}.pem"), _pem_cert(cert)),
                    _write(os.path.join(self.dir, f"{name}.key"), _pem_key(key)))

    def issue(self, ca, name, cn, server=False, not_before=None, not_after=None,
              sans=("IP:127.0.0.1", "DNS:localhost")):
        """A certificate for cn signed by ca (a Cert from make_ca, or None for this PKI's CA):
        name.pem and name.key in the directory. server=True: a TLS server certificate with
        the SANs given (IP:... or DNS:...); otherwise a TLS client one."""
        ca = ca or self._ca
        key = _key()
        b = (x509.CertificateBuilder()
             .subject_name(_name(cn)).issuer_name(ca.cert.subject)
             .public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(not_before or self.now - datetime.timedelta(hours=1))
             .not_valid_after(not_after or self.now + datetime.timedelta(days=30))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False,
                                          content_commitment=False, data_encipherment=False,
                                          key_agreement=False, key_cert_sign=False,
                                          crl_sign=False, encipher_only=False,
                                          decipher_only=False), critical=True)
             .add_extension(x509.ExtendedKeyUsage(
                 [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                 critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                 ca.key.public_key()), critical=False))
        if server:
            names = []
            for s in sans:
                kind, _, value = s.partition(":")
                names.append(x509.IPAddress(ipaddress.ip_address(value)) if kind == "IP"
                             else x509.DNSName(value))
            b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = b.sign(ca.key, hashes.SHA256())
        return Cert(cert, key, _write(os.path.join(self.dir, f"{name}.pem"), _pem_cert(cert)),
                    _write(os.path.join(self.dir, f"{name}.key"), _pem_key(key)))

    def rdkafka(self, client="client", ca=None):
        """librdkafka ssl.* properties: trust ca (default this PKI's CA; "other" the second CA)
        and, when client is "client", "expired" or "other-client", present that certificate."""
        props = {"ssl.ca.location": {None: self.ca_cert, "other": self.other_ca_cert}[ca]}
        if client:
            cert, key = {"client": (self.client_cert, self.client_key),
                         "expired": (self.expired_cert, self.expired_key),
                         "other-client": (self.other_client_cert, self.other_client_key)}[client]
            props.update({"ssl.certificate.location": cert, "ssl.key.location": key})
        return props

    def files(self):
        return {k: v for k, v in vars(self).items()
                if k != "dir" and isinstance(v, str) and v.startswith("/")}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: tls.py DIR", file=sys.stderr)
        sys.exit(1)
    for k, v in sorted(Pki(sys.argv[1]).files().items()):
        print(f"{k} {v}")
