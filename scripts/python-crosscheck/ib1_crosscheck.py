"""Drives IB1's reference Python libraries for the cross-check tests in test/provenance/.

Run with the venv that setup.sh makes: `.venv/bin/python ib1_crosscheck.py COMMAND`. Each command
reads one JSON object on stdin and writes one JSON object on stdout. Failures of the thing being
checked (a record that does not verify) are answers, {"ok": false, "error": ...}, with exit 0;
exit 2 means the request itself was wrong.

Commands:
  verify            {"trustFramework", "rootPem", "record"}
                    -> {"ok": true, "steps": [...]} as ib1.provenance's Record.decoded()
  sign              {"trustFramework", "rootPem", "certificatesPem", "keyPem", "steps": [...],
                     "include"?: encoded record to extend (verified first, as IB1's CAP example does),
                     "selfContained"?: true}
                    -> {"ok": true, "record": ..., "ids": [...]}
  directory-certs   {"dir", "usage": "client"|"signing", "applicationUri", "memberUri",
                     "organisation", "roles": [...]}
                    Makes a CA, an issuer and an application certificate with ib1-directory, through
                    its command-line tool when this Python can import it (3.12+), else through the
                    library functions that tool calls.
                    -> {"ok": true, "via": "cli"|"library", "caPem", "issuerPem", "certPem", "keyPem", "bundlePem"}
"""

import json
import os
import subprocess
import sys
import traceback

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization


def verify(request):
    from ib1.provenance import Record
    from ib1.provenance.certificates import CertificatesProviderSelfContainedRecord

    provider = CertificatesProviderSelfContainedRecord(request["rootPem"].encode("utf-8"))
    record = Record(request["trustFramework"], request["record"])
    record.verify(provider)
    return {"ok": True, "steps": record.decoded()}


def sign(request):
    from ib1.provenance import Record
    from ib1.provenance.certificates import CertificatesProviderSelfContainedRecord
    from ib1.provenance.signing import SignerInMemory

    root_pem = request["rootPem"].encode("utf-8")
    provider = CertificatesProviderSelfContainedRecord(root_pem)
    if not request.get("selfContained", True):
        provider.policy_include_certificates_in_record = False
    certificates = x509.load_pem_x509_certificates(request["certificatesPem"].encode("utf-8"))
    key = serialization.load_pem_private_key(request["keyPem"].encode("utf-8"), password=None)
    signer = SignerInMemory(provider, certificates, key)

    included = request.get("include")
    record = Record(request["trustFramework"], included)
    if included is not None:
        record.verify(provider)
    ids = [record.add_step(step) for step in request["steps"]]
    signed = record.sign(signer)
    return {"ok": True, "record": signed.encoded(), "ids": ids}


def _read(path):
    with open(path, "r", encoding="utf-8") as f:
        return f.read()


def _cli_importable():
    try:
        import ib1.directory.cli  # noqa: F401  (a SyntaxError before Python 3.12)
    except SyntaxError:
        return False
    return True


def directory_certs(request):
    directory = request["dir"]
    usage = request.get("usage", "client")
    os.makedirs(directory, exist_ok=True)
    if _cli_importable():
        via = "cli"
        run = lambda *args: subprocess.run(  # noqa: E731
            [sys.executable, "-m", "ib1.directory.cli", *args],
            cwd=directory,
            check=True,
            capture_output=True,
            text=True,
        )
        run("create-ca", "--usage", usage)
        roles = [arg for role in request["roles"] for arg in ("--role", role)]
        run(
            "create-application-certificates",
            "--issuer-key-file", f"{usage}-issuer-key.pem",
            "--issuer-cert-file", f"{usage}-issuer-cert.pem",
            "--member-uri", request["memberUri"],
            "--application-uri", request["applicationUri"],
            "--organization-name", request["organisation"],
            "--certificate-type", usage,
            *roles,
        )
        prefix = f"{request['organisation'].lower().replace(' ', '-')}-{usage}"
        return {
            "ok": True,
            "via": via,
            "caPem": _read(os.path.join(directory, f"{usage}-ca-cert.pem")),
            "issuerPem": _read(os.path.join(directory, f"{usage}-issuer-cert.pem")),
            "certPem": _read(os.path.join(directory, f"{prefix}-cert.pem")),
            "keyPem": _read(os.path.join(directory, f"{prefix}-key.pem")),
            "bundlePem": _read(os.path.join(directory, f"{prefix}-bundle.pem")),
        }

    # The same calls as ib1.directory.cli's create-ca and create-application-certificates.
    from ib1.directory.certificates import build_subject, create_signing_pair, generate_key, get_bundle, sign_csr

    pem = lambda c: c.public_bytes(serialization.Encoding.PEM)  # noqa: E731
    key_pem = lambda k: k.private_bytes(  # noqa: E731
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode("utf-8")
    ca_key, ca_cert = create_signing_pair(use=usage.capitalize(), kind="CA")
    issuer_key, issuer_cert = create_signing_pair(use=usage.capitalize(), kind="Issuer", ca_cert=ca_cert, ca_key=ca_key)
    client_key = generate_key()
    subject = build_subject(country="GB", state="London", organization_name=request["organisation"], common_name=request["applicationUri"])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(client_key, hashes.SHA256())
    cert = sign_csr(
        issuer_cert=issuer_cert,
        issuer_key=issuer_key,
        csr_pem=csr.public_bytes(serialization.Encoding.PEM),
        subject=subject,
        roles=request["roles"],
        member=request["memberUri"],
    )
    return {
        "ok": True,
        "via": "library",
        "caPem": pem(ca_cert).decode("utf-8"),
        "issuerPem": pem(issuer_cert).decode("utf-8"),
        "certPem": pem(cert).decode("utf-8"),
        "keyPem": key_pem(client_key),
        "bundlePem": get_bundle(pem(cert), pem(issuer_cert)).decode("utf-8"),
    }


COMMANDS = {"verify": verify, "sign": sign, "directory-certs": directory_certs}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in COMMANDS:
        print(f"usage: {sys.argv[0]} {'|'.join(COMMANDS)} < request.json", file=sys.stderr)
        sys.exit(2)
    try:
        request = json.load(sys.stdin)
    except ValueError as error:
        print(f"request is not JSON: {error}", file=sys.stderr)
        sys.exit(2)
    try:
        answer = COMMANDS[sys.argv[1]](request)
    except subprocess.CalledProcessError as error:
        answer = {"ok": False, "error": f"{error}: {error.stderr}"}
    except Exception as error:  # the library raises bare Exceptions for every failure
        answer = {"ok": False, "error": f"{type(error).__name__}: {error}", "trace": traceback.format_exc()}
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
