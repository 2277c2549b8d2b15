"""mail.py against real SMTP servers on 127.0.0.1 (aiosmtpd): TLS, AUTH, refusals, drops, outbox, privacy."""

from __future__ import annotations

import datetime as dt
import logging
import os
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

import pytest
from jinja2 import UndefinedError

from homevisits import mail
from homevisits.errors import HomevisitsError
from homevisits.ledger import Ledger
from homevisits.mail import build_message, check_recipients, describe
from homevisits.transports import (
    ConnectionFailure,
    InsecureServer,
    OutboxTransport,
    PermanentFailure,
    SmtpTransport,
    TemporaryFailure,
    open_transport,
)
from smtp_fixtures import (
    RecordingHandler,
    dead_port,
    header_lines,
    make_ca,
    server_context,
    smtp_server,
    write_ca,
)

NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)
DOMAINS = ["school.example"]
SENDER = "homevisits@school.example"
STAFF = "a.teacher@school.example"
MANAGER = "line.manager@school.example"
DSL = "dsl@school.example"
PASSWORD_ENV = "HOMEVISITS_TEST_SMTP_PASSWORD"


def msg(n: int = 1, *, to=(DSL,), cc=(STAFF, MANAGER), visit: str = "HV-0042", kind: str = "form", **extra):
    """A message as a job would build it, with a stable Message-ID per n."""
    fields = {
        "sender": ("Home visits", SENDER),
        "to": list(to),
        "cc": list(cc),
        "subject": mail.subject(kind, visit, NOW),
        "text": f"Message {n} about {visit}.\n",
        "message_id": f"<test-{n}.{visit}@school.example>",
        "visit_id": visit,
        "kind": kind,
        "date": NOW,
    }
    fields.update(extra)
    return build_message(**fields)


def smtp_cfg(server, **overrides) -> dict:
    cfg = {
        "transport": "smtp",
        "host": server.host,
        "port": server.port,
        "security": "none",
        "from": SENDER,
        "allowed_domains": DOMAINS,
        "timeout": 10,
    }
    cfg.update(overrides)
    return cfg


def text_of(part) -> str:
    """A text part's content with the wire's CRLF line ends as plain newlines."""
    return part.get_content().replace("\r\n", "\n")


# ---------------------------------------------------------------- building messages


def test_build_message_has_the_given_ids_and_crlf_headers():
    message = msg(7)
    raw = message.as_bytes()
    parsed = message_from_bytes(raw, policy=default_policy)
    assert parsed["Message-ID"] == "<test-7.HV-0042@school.example>"
    assert parsed["From"] == f"Home visits <{SENDER}>"
    assert parsed["To"] == DSL
    assert parsed["Cc"] == f"{STAFF}, {MANAGER}"
    assert parsed["Date"] == "Mon, 23 Nov 2026 09:00:00 +0000"
    assert parsed["Subject"] == "Home visit HV-0042 on Mon 23 Nov 2026: risk assessment form"
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["X-Homevisits-Visit"] == "HV-0042" and parsed["X-Homevisits-Kind"] == "form"
    assert text_of(parsed) == "Message 7 about HV-0042.\n"
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")


def test_build_message_with_html_and_pdf_attachment():
    pdf = b"%PDF-1.7\n\x00\x01\x02binary\xff\n%%EOF\n"
    message = msg(
        html="<p>The form</p>", attachments=[("HV-0042-risk-assessment.pdf", pdf, "application/pdf")]
    )
    parsed = message_from_bytes(message.as_bytes(), policy=default_policy)
    assert parsed.get_content_type() == "multipart/mixed"
    body = parsed.get_body(preferencelist=("html",))
    assert body is not None and body.get_content().strip() == "<p>The form</p>"
    assert text_of(parsed.get_body(preferencelist=("plain",))) == "Message 1 about HV-0042.\n"
    (attachment,) = list(parsed.iter_attachments())
    assert attachment.get_filename() == "HV-0042-risk-assessment.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content() == pdf


@pytest.mark.parametrize(
    "field, value",
    [
        ("subject", "Visit HV-0042\r\nBcc: thief@evil.example"),
        ("subject", "Visit HV-0042\nBcc: thief@evil.example\n\nInjected body"),
        ("subject", "Visit HV-0042\rTo: thief@evil.example"),
        ("to", [("Jane\r\nBcc: thief@evil.example", "jane@school.example")]),
        ("to", ["Jane\nBcc: thief@evil.example <jane@school.example>"]),
        ("sender", ("Home visits\r\nBcc: thief@evil.example", SENDER)),
        ("cc", [("Line\r\n manager\r\nReply-To: thief@evil.example", MANAGER)]),
    ],
)
def test_cr_lf_in_subject_or_name_cannot_inject_a_header(field, value):
    message = msg(**{field: value})
    raw = message.as_bytes()
    names = [line.split(":", 1)[0].lower() for line in header_lines(raw)]
    assert "bcc" not in names
    assert names.count("to") == 1 and names.count("subject") == 1 and names.count("from") == 1
    assert "reply-to" not in names
    assert "thief@evil.example" not in mail.envelope_recipients(message)
    parsed = message_from_bytes(raw, policy=default_policy)
    assert text_of(parsed) == "Message 1 about HV-0042.\n"  # nothing injected into the body


def test_injection_attempt_never_reaches_the_server_envelope():
    with smtp_server() as server, open_transport(smtp_cfg(server), Path(".")) as transport:
        transport.send(
            msg(subject="Hi\r\nBcc: thief@evil.example", to=[("X\r\nCc: thief@evil.example", DSL)])
        )
    (received,) = server.messages
    assert received.rcpt_tos == [DSL, STAFF, MANAGER]
    assert [a.addr_spec for a in received.message["To"].addresses] == [DSL]
    assert received.message["To"].addresses[0].display_name == "X Cc: thief@evil.example"  # just text
    assert received.message["Bcc"] is None and len(received.message.get_all("Cc")) == 1


def test_non_ascii_names_and_text_travel_7bit_clean():
    message = msg(
        to=[("Siân O’Brien", DSL)], subject="Visite à HV-0042", text="Café at 10:00 — near B23 6XX.\n"
    )
    raw = message.as_bytes()
    assert all(byte < 128 for byte in raw)
    parsed = message_from_bytes(raw, policy=default_policy)
    assert parsed["To"].addresses[0].display_name == "Siân O’Brien"
    assert parsed["Subject"] == "Visite à HV-0042"
    assert text_of(parsed) == "Café at 10:00 — near B23 6XX.\n"


@pytest.mark.parametrize(
    "fields",
    [
        {"to": ["not an address"]},
        {"to": ["a@b@school.example"]},
        {"to": [], "cc": []},
        {"message_id": "no-angle-brackets@school.example"},
        {"message_id": "<two words@school.example>"},
        {"message_id": "<x@school.example>\r\nBcc: thief@evil.example"},
        {"message_id": "<=?utf-8?q?=0D=0ABcc:_x@evil.example?=@school.example>"},
        {"message_id": "<HV 7.1@school.example>"},
        {"to": ["pat%evil.example@school.example"]},
        {"to": ["evil!pat@school.example"]},
    ],
)
def test_build_message_refuses_bad_addresses_and_ids(fields):
    with pytest.raises(ValueError):
        msg(**fields)


def test_only_whitelisted_text_reaches_a_header():
    message = msg(
        visit="row-14",
        subject=mail.subject("overdue_alert", "HV 7 =?utf-8?q?=0D=0AReply-To:_x@evil.example?=", NOW, row=14),
    )
    assert message["Subject"] == "URGENT: no safe return confirmed for home visit row 14 on Mon 23 Nov 2026"
    assert message["X-Homevisits-Visit"] == "row-14"
    assert describe(message) == "row-14 form to 3 recipients"
    forged = msg(  # a caller that forgot visit_ref
        visit="HV-7 =?utf-8?q?=0D=0AReply-To:_x@evil.example?=", message_id="<1@school.example>"
    )
    assert forged["X-Homevisits-Visit"].startswith("id-") and forged["Reply-To"] is None
    assert mail.header_text('Ann "=?utf-8?q?x?=" <a@b> \\ Smith') == "Ann utf-8 q x a@b Smith"


def test_a_header_that_would_not_fold_to_one_line_is_refused():
    from email.message import EmailMessage

    message = EmailMessage(policy=mail.SMTP_POLICY)
    message["Subject"] = "Hello =?utf-8?q?=0D=0AReply-To:_x@evil.example?="  # what 3.11.7 lets through
    message.set_content("body")
    with pytest.raises(ValueError, match="Subject header"):
        mail.check_headers(message)
    message = EmailMessage(policy=mail.SMTP_POLICY)
    message["X-Other"] = "fine"
    with pytest.raises(ValueError, match="X-Other"):
        mail.check_headers(message)  # a header this module never writes
    mail.check_headers(msg())


def test_outbox_file_names_carry_only_a_header_safe_visit(tmp_path):
    transport = OutboxTransport(tmp_path, DOMAINS)
    assert transport.file_for(msg(visit="row-14", kind="overdue_alert")).name.startswith(
        "row-14_overdue-alert_"
    )
    assert transport.file_for(msg(visit="HV/7.a")).name.startswith("HV-7-a_form_")
    unsafe = msg(visit="Ava Example\r\nBcc: x@evil.example", message_id="<1@school.example>")
    assert transport.file_for(unsafe).name.startswith(unsafe["X-Homevisits-Visit"] + "_form_")


def test_describe_names_visit_kind_and_count_only():
    message = msg(to=[("Alice Pupil-Parent", DSL)], cc=[STAFF, MANAGER, STAFF.upper()])
    assert describe(message) == "HV-0042 form to 3 recipients"
    assert describe(msg(cc=())) == "HV-0042 form to 1 recipient"


def test_subject_carries_visit_id_and_london_date_only():
    late_evening_utc = dt.datetime(2026, 6, 30, 23, 30, tzinfo=dt.UTC)  # already 1 July in London (BST)
    assert mail.subject("overdue_alert", "HV-0007", late_evening_utc) == (
        "URGENT: no safe return confirmed for home visit HV-0007 on Wed 1 Jul 2026"
    )
    assert mail.subject("reminder", "HV-0042\r\nBcc: x@evil.example", dt.date(2026, 11, 23)).count("\n") == 0
    assert mail.subject("admin_report", count=2) == "homevisits could not deliver 2 messages"


# ---------------------------------------------------------------- allowed domains


def test_check_recipients_exact_domain_subdomain_any_case():
    allowed, refused = check_recipients(
        [
            "dsl@school.example",
            "Bob@Staff.School.EXAMPLE",
            "Line Manager <lm@school.example>",
            "mailto:head@school.example",
            "DSL@school.example",  # the same person again
            None,
            "  ",
        ],
        ["School.Example."],
    )
    assert allowed == [
        "dsl@school.example",
        "Bob@staff.school.example",
        "lm@school.example",
        "head@school.example",
    ]
    assert refused == []


@pytest.mark.parametrize(
    "address",
    [
        "someone@gmail.example",
        "someone@evilschool.example",
        "someone@school.example.evil.example",
        "someone@school.examplex",
        "school.example@evil.example",
        "not an address",
        "a@b@school.example",
        "x@school.example\r\nBcc: y@evil.example",
        "pupil.parent@school.example@evil.example",
    ],
)
def test_check_recipients_refuses_outside_or_malformed(address):
    allowed, refused = check_recipients([address, "dsl@school.example"], ["@school.example"])
    assert allowed == ["dsl@school.example"]
    assert refused == [address]


def test_check_recipients_with_no_allowed_domains_mails_nobody():
    assert check_recipients(["dsl@school.example"], []) == ([], ["dsl@school.example"])


def test_transport_refuses_a_recipient_outside_allowed_domains_without_connecting():
    outsider = msg(cc=[STAFF, "parent@gmail.example"])
    with smtp_server() as server, open_transport(smtp_cfg(server), Path(".")) as transport:
        with pytest.raises(PermanentFailure) as caught:
            transport.send(outsider)
        assert caught.value.recipients == ("parent@gmail.example",)
        assert "gmail" not in str(caught.value)
    assert server.messages == [] and server.handler.connections == 0


# ---------------------------------------------------------------- configuration


def test_default_transport_is_the_outbox(tmp_path):
    transport = open_transport(None, tmp_path)
    assert isinstance(transport, OutboxTransport) and transport.folder == tmp_path / "state" / "outbox"
    transport = open_transport({"transport": "outbox", "outbox": "demo/outbox"}, tmp_path)
    assert transport.folder == tmp_path / "demo" / "outbox"


@pytest.mark.parametrize("host", ["smtp.example.org", "10.0.0.5", "192.168.1.1", "localhost.example.org"])
def test_security_none_is_refused_off_loopback(host):
    with pytest.raises(HomevisitsError, match="only allowed for a mail relay on this machine"):
        open_transport(
            {"host": host, "security": "none", "from": SENDER, "allowed_domains": DOMAINS}, Path(".")
        )


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_security_none_is_allowed_on_loopback(host):
    transport = open_transport(
        {"host": host, "security": "none", "from": SENDER, "allowed_domains": DOMAINS}, Path(".")
    )
    assert isinstance(transport, SmtpTransport) and transport.port == 25


def test_default_ports_follow_security():
    base = {"host": "smtp.example.org", "from": SENDER, "allowed_domains": DOMAINS}
    assert open_transport(base, Path(".")).port == 587
    assert open_transport({**base, "security": "ssl"}, Path(".")).port == 465
    assert open_transport({**base, "port": 2525}, Path(".")).port == 2525


def test_username_without_password_in_the_environment_names_the_variable(monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    cfg = {"host": "smtp.example.org", "from": SENDER, "allowed_domains": DOMAINS, "username": SENDER}
    with pytest.raises(HomevisitsError, match=PASSWORD_ENV):
        open_transport({**cfg, "password_env": PASSWORD_ENV}, Path("."))
    monkeypatch.setenv(PASSWORD_ENV, "")
    with pytest.raises(HomevisitsError, match=PASSWORD_ENV):
        open_transport({**cfg, "password_env": PASSWORD_ENV}, Path("."))
    monkeypatch.delenv("HOMEVISITS_SMTP_PASSWORD", raising=False)
    with pytest.raises(HomevisitsError, match="HOMEVISITS_SMTP_PASSWORD"):
        open_transport(cfg, Path("."))


@pytest.mark.parametrize(
    "cfg, words",
    [
        ({"transport": "pigeon"}, "unknown"),
        ({"transport": "smtp"}, "needs host"),
        ({"host": "smtp.example.org", "allowed_domains": DOMAINS}, "needs from"),
        ({"host": "smtp.example.org", "from": SENDER}, "allowed_domains"),
        (
            {"host": "smtp.example.org", "from": SENDER, "allowed_domains": DOMAINS, "security": "tls1"},
            "unknown",
        ),
        ({"host": "smtp.example.org", "from": SENDER, "allowed_domains": DOMAINS, "port": "x"}, "number"),
        (
            {"host": "smtp.example.org", "from": SENDER, "allowed_domains": DOMAINS, "ca_file": "nope.pem"},
            "does not exist",
        ),
    ],
)
def test_bad_mail_settings_say_what_to_fix(cfg, words):
    with pytest.raises(HomevisitsError, match=words):
        open_transport(cfg, Path("."))


def test_a_ca_file_that_is_not_a_certificate_says_so(tmp_path):
    (tmp_path / "ca.pem").write_text("not a certificate")
    cfg = {"host": "smtp.example.org", "from": SENDER, "allowed_domains": DOMAINS, "ca_file": "ca.pem"}
    with pytest.raises(HomevisitsError, match="PEM"):
        open_transport(cfg, tmp_path)


# ---------------------------------------------------------------- SMTP delivery


def test_plain_delivery_on_loopback_uses_one_connection(caplog):
    caplog.set_level(logging.DEBUG)
    with smtp_server() as server, open_transport(smtp_cfg(server), Path(".")) as transport:
        for n in (1, 2, 3):
            assert transport.send(msg(n, visit=f"HV-000{n}")) == {}
    assert server.handler.connections == 1
    assert [m.rcpt_tos for m in server.messages] == [[DSL, STAFF, MANAGER]] * 3
    assert [m.mail_from for m in server.messages] == [SENDER] * 3
    assert server.handler.message_ids() == [f"<test-{n}.HV-000{n}@school.example>" for n in (1, 2, 3)]
    assert (
        server.messages[0].message["Subject"] == "Home visit HV-0001 on Mon 23 Nov 2026: risk assessment form"
    )
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("homevisits")]
    assert any("HV-0002 form to 3 recipients" in line for line in ours)
    assert not any("@" in line or "Home visits" in line for line in ours)


def smtp_cfg_for(port: int) -> dict:
    return {"host": "127.0.0.1", "port": port, "from": SENDER, "allowed_domains": DOMAINS, "timeout": 5}


def test_a_run_with_nothing_to_send_never_connects():
    with smtp_server() as server:
        with open_transport({**smtp_cfg_for(server.port), "security": "none"}, Path(".")) as transport:
            assert isinstance(transport, SmtpTransport)
        assert server.handler.connections == 0  # opened and closed with nothing to send: never connected


def test_server_down_is_a_connection_failure_and_stays_broken_for_the_run():
    with (
        dead_port() as port,
        open_transport({**smtp_cfg_for(port), "security": "none"}, Path(".")) as transport,
    ):
        with pytest.raises(ConnectionFailure, match="Could not connect"):
            transport.send(msg(1))
        with pytest.raises(ConnectionFailure):
            transport.send(msg(2))


def test_starttls_with_the_schools_ca_and_auth_from_the_environment(tmp_path, monkeypatch):
    ca = make_ca()
    handler = RecordingHandler(users={SENDER: "correct horse"})
    monkeypatch.setenv(PASSWORD_ENV, "correct horse")
    cfg_extra = {
        "security": "starttls",
        "ca_file": "ca.pem",
        "username": SENDER,
        "password_env": PASSWORD_ENV,
    }
    write_ca(ca, tmp_path / "ca.pem")
    with (
        smtp_server(handler=handler, starttls=server_context(ca), auth=True) as server,
        open_transport(smtp_cfg(server, **cfg_extra), tmp_path) as transport,
    ):
        transport.send(msg(1))
        transport.send(msg(2))
    assert [(m.tls, m.login) for m in server.messages] == [(True, SENDER), (True, SENDER)]
    assert handler.logins == [("PLAIN", SENDER, True)]
    assert handler.connections == 1


def test_implicit_tls_delivers(tmp_path):
    ca = make_ca()
    write_ca(ca, tmp_path / "ca.pem")
    with (
        smtp_server(implicit_tls=server_context(ca)) as server,
        open_transport(smtp_cfg(server, security="ssl", ca_file=str(tmp_path / "ca.pem")), tmp_path) as t,
    ):
        t.send(msg(1))
    assert [m.tls for m in server.messages] == [True]


@pytest.mark.parametrize("fault", ["other_ca", "wrong_host", "system_store"])
def test_certificate_that_does_not_verify_gets_no_auth_and_no_message(tmp_path, monkeypatch, fault):
    trusted, stranger = make_ca(), make_ca()
    write_ca(trusted, tmp_path / "ca.pem")
    server_ca = stranger if fault == "other_ca" else trusted
    names = ("mail.other.example",) if fault == "wrong_host" else ()
    handler = RecordingHandler(users={SENDER: "pw"})
    monkeypatch.setenv(PASSWORD_ENV, "pw")
    extra = {"security": "starttls", "username": SENDER, "password_env": PASSWORD_ENV}
    if fault != "system_store":
        extra["ca_file"] = "ca.pem"
    with (
        smtp_server(handler=handler, starttls=server_context(server_ca, *names), auth=True) as server,
        open_transport(smtp_cfg(server, **extra), tmp_path) as transport,
    ):
        with pytest.raises(InsecureServer, match="does not verify"):
            transport.send(msg(1))
        with pytest.raises(InsecureServer):
            transport.send(msg(2))  # no second try in the same run
    assert handler.logins == [] and server.messages == []
    assert handler.connections == 1


def test_implicit_tls_with_an_unverifiable_certificate_is_refused(tmp_path):
    write_ca(make_ca(), tmp_path / "ca.pem")
    with (
        smtp_server(implicit_tls=server_context(make_ca())) as server,
        open_transport(smtp_cfg(server, security="ssl", ca_file="ca.pem"), tmp_path) as transport,
        pytest.raises(InsecureServer),
    ):
        transport.send(msg(1))
    assert server.messages == []


def test_server_without_starttls_gets_no_password_and_no_message(monkeypatch):
    handler = RecordingHandler(users={SENDER: "pw"})
    monkeypatch.setenv(PASSWORD_ENV, "pw")
    # This server would happily take a password in clear: homevisits must not offer one.
    with smtp_server(handler=handler, auth=True, auth_require_tls=False) as server:
        cfg = smtp_cfg(server, security="starttls", username=SENDER, password_env=PASSWORD_ENV)
        with (
            open_transport(cfg, Path(".")) as transport,
            pytest.raises(InsecureServer, match="does not offer"),
        ):
            transport.send(msg(1))
    assert handler.logins == [] and server.messages == []


def test_server_refusing_starttls_gets_no_password_and_no_message(tmp_path, monkeypatch):
    ca = make_ca()
    write_ca(ca, tmp_path / "ca.pem")
    handler = RecordingHandler(users={SENDER: "pw"})
    monkeypatch.setenv(PASSWORD_ENV, "pw")
    with smtp_server(handler=handler, starttls=server_context(ca), refuse_starttls=True, auth=True) as server:
        cfg = smtp_cfg(
            server, security="starttls", ca_file="ca.pem", username=SENDER, password_env=PASSWORD_ENV
        )
        with open_transport(cfg, tmp_path) as transport, pytest.raises(InsecureServer) as caught:
            transport.send(msg(1))
    assert caught.value.code == 454
    assert handler.logins == [] and server.messages == []


def test_wrong_password_keeps_messages_queued(tmp_path, monkeypatch):
    ca = make_ca()
    write_ca(ca, tmp_path / "ca.pem")
    handler = RecordingHandler(users={SENDER: "right"})
    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    with smtp_server(handler=handler, starttls=server_context(ca), auth=True) as server:
        cfg = smtp_cfg(
            server, security="starttls", ca_file="ca.pem", username=SENDER, password_env=PASSWORD_ENV
        )
        with open_transport(cfg, tmp_path) as transport:
            with pytest.raises(ConnectionFailure, match="username or password") as caught:
                transport.send(msg(1))
            with pytest.raises(ConnectionFailure):
                transport.send(msg(2))
    assert caught.value.code == 535 and not isinstance(caught.value, PermanentFailure)
    assert "wrong" not in str(caught.value)
    assert handler.logins and not any(ok for *_, ok in handler.logins)  # smtplib tries each mechanism once
    assert server.messages == [] and handler.connections == 1


# ---------------------------------------------------------------- refusals and drops


def test_4xx_for_a_recipient_is_temporary_and_nobody_gets_it_this_time():
    handler = RecordingHandler(rcpt_replies={MANAGER: "450 4.2.1 Mailbox busy"})
    with smtp_server(handler=handler) as server, open_transport(smtp_cfg(server), Path(".")) as transport:
        with pytest.raises(TemporaryFailure) as caught:
            transport.send(msg(1))
        assert transport.send(msg(2, cc=[STAFF])) == {}  # the connection is still good
    error = caught.value
    assert not isinstance(error, ConnectionFailure)
    assert (error.code, error.status, error.recipients) == (450, "4.2.1", (MANAGER,))
    assert "@" not in str(error)
    assert server.handler.message_ids() == ["<test-2.HV-0042@school.example>"]


def test_5xx_for_one_recipient_delivers_to_the_others_and_reports_it():
    handler = RecordingHandler(rcpt_replies={MANAGER: "550 5.1.1 No such user"})
    with smtp_server(handler=handler) as server, open_transport(smtp_cfg(server), Path(".")) as transport:
        refused = transport.send(msg(1))
    assert refused == {MANAGER: "550 5.1.1"}
    assert server.handler.recipients == [[DSL, STAFF]]


def test_5xx_for_every_recipient_is_permanent():
    handler = RecordingHandler(rcpt_replies={DSL: "550 5.1.1 No such user", STAFF: "553 5.1.3 Bad address"})
    with (
        smtp_server(handler=handler) as server,
        open_transport(smtp_cfg(server), Path(".")) as transport,
        pytest.raises(PermanentFailure) as caught,
    ):
        transport.send(msg(1, cc=[STAFF]))
    assert caught.value.code == 550 and set(caught.value.recipients) == {DSL, STAFF}
    assert server.messages == []


@pytest.mark.parametrize(
    "reply, error, code",
    [
        ("451 4.3.0 Try again later", TemporaryFailure, 451),
        ("554 5.6.0 Message content rejected", PermanentFailure, 554),
        ("421 4.3.2 Shutting down", ConnectionFailure, 421),
    ],
)
def test_replies_to_data_map_to_failures(reply, error, code):
    handler = RecordingHandler(data_replies={2: reply})
    with smtp_server(handler=handler) as server, open_transport(smtp_cfg(server), Path(".")) as transport:
        transport.send(msg(1))
        with pytest.raises(error) as caught:
            transport.send(msg(2))
    assert caught.value.code == code
    assert server.handler.message_ids() == ["<test-1.HV-0042@school.example>"]
    if error is PermanentFailure:
        assert not isinstance(caught.value, TemporaryFailure)


def test_refused_sender_stops_the_run_without_failing_messages_for_good():
    handler = RecordingHandler(mail_reply="553 5.7.1 Sender not allowed")
    with (
        smtp_server(handler=handler) as server,
        open_transport(smtp_cfg(server), Path(".")) as transport,
        pytest.raises(ConnectionFailure, match="sender address") as caught,
    ):
        transport.send(msg(1))
    assert caught.value.code == 553 and server.messages == []


@pytest.mark.parametrize("fault", ["drop_after_data", "cut_during_data"])
def test_connection_dropped_mid_message_is_temporary_and_ends_the_run(fault):
    handler = RecordingHandler(**{fault: {2}})
    with smtp_server(handler=handler) as server, open_transport(smtp_cfg(server), Path(".")) as transport:
        transport.send(msg(1))
        with pytest.raises(ConnectionFailure, match="dropped the connection"):
            transport.send(msg(2))
        with pytest.raises(ConnectionFailure):
            transport.send(msg(3))  # one connection per run: the rest wait for the next run
        assert handler.connections == 1
        assert handler.message_ids() == ["<test-1.HV-0042@school.example>"]
        with open_transport(smtp_cfg(server), Path(".")) as transport:  # the next run
            transport.send(msg(2))
            transport.send(msg(3))
    assert handler.connections == 2
    assert handler.message_ids() == [f"<test-{n}.HV-0042@school.example>" for n in (1, 2, 3)]


FAULTS = {
    "4xx": {"data_replies": "451 4.3.0 Try again later"},
    "5xx": {"data_replies": "554 5.7.1 Rejected"},
    "drop": {"drop_after_data": None},
    "cut": {"cut_during_data": None},
}


@pytest.mark.parametrize("position", [1, 2, 3, 4])
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_batch_with_a_fault_at_any_message_loses_none_and_repeats_none(tmp_path, fault, position):
    """The send loop the jobs will use, over the ledger: a fault at message N of 4, then a second run."""
    handler = RecordingHandler()
    setting, value = next(iter(FAULTS[fault].items()))
    getattr(handler, setting).update({position: value} if value else {position})
    keys = [f"form:HV-000{n}" for n in (1, 2, 3, 4)]
    outcomes = []
    with smtp_server(handler=handler) as server, Ledger(tmp_path / "ledger.sqlite", sender=SENDER) as ledger:
        for key in keys:
            ledger.queue(key, key.split(":")[1], "form", [DSL], NOW)
        for run in (1, 2):
            with open_transport(smtp_cfg(server), tmp_path) as transport:
                for entry in ledger.pending():
                    message = msg(to=[DSL], cc=[], visit=entry.visit_id, message_id=entry.message_id)
                    ledger.attempt(entry.key, NOW)
                    try:
                        transport.send(message)
                    except PermanentFailure as exc:
                        ledger.mark_failed(entry.key, NOW, str(exc), permanent=True)
                        outcomes.append((run, entry.visit_id, "failed"))
                    except TemporaryFailure as exc:
                        ledger.mark_failed(entry.key, NOW, str(exc), permanent=False)
                        outcomes.append((run, entry.visit_id, "retry"))
                    else:
                        ledger.mark_sent(entry.key, NOW)
                        outcomes.append((run, entry.visit_id, "sent"))
        delivered = handler.message_ids()
        assert len(delivered) == len(set(delivered))  # none repeated
        expected = {e.message_id for e in ledger.entries() if e.status == "sent"}
        assert set(delivered) == expected
        assert ledger.pending() == []  # none lost: everything is sent or refused for good
        if fault == "5xx":
            assert [e.visit_id for e in ledger.failed()] == [f"HV-000{position}"]
        else:
            assert len(delivered) == 4
    assert (1, f"HV-000{position}", "failed" if fault == "5xx" else "retry") in outcomes


# ---------------------------------------------------------------- outbox


def test_outbox_writes_parseable_eml_named_without_personal_data(tmp_path):
    transport = open_transport({"transport": "outbox", "outbox": "out", "allowed_domains": DOMAINS}, tmp_path)
    message = msg(1, cc=[("Alice Smith", STAFF)], subject="Home visit HV-0042 for Alice Smith")
    with transport:
        assert transport.send(message) == {}
        transport.send(message)  # a retry of the same message replaces its file
        transport.send(msg(2, kind="reminder"))
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(files) == 2
    assert all(name.startswith("HV-0042_") and name.endswith(".eml") for name in files)
    assert not any("alice" in name.lower() or "smith" in name.lower() for name in files)
    parsed = message_from_bytes(transport.file_for(message).read_bytes(), policy=default_policy)
    assert parsed["Message-ID"] == "<test-1.HV-0042@school.example>"
    assert parsed["Cc"].addresses[0].addr_spec == STAFF


def test_outbox_keeps_to_allowed_domains_and_reports_an_unwritable_folder(tmp_path):
    transport = open_transport({"outbox": "out", "allowed_domains": DOMAINS}, tmp_path)
    with pytest.raises(PermanentFailure):
        transport.send(msg(to=["parent@gmail.example"]))
    assert not (tmp_path / "out").exists()
    (tmp_path / "blocked").write_text("a file where the folder should be")
    with pytest.raises(ConnectionFailure, match="outbox folder"):
        open_transport({"outbox": "blocked/out"}, tmp_path).send(msg())


# ---------------------------------------------------------------- bodies


START = dt.datetime(2026, 3, 30, 8, 0, tzinfo=dt.UTC)  # Monday after the clocks go forward: 09:00 in London
VISIT = {
    "visit_id": "HV-0042",
    "visit_start": START,
    "deadline": START - dt.timedelta(hours=24),
    "policy_name": "OMG Education",
}
PROBLEMS = [{"column": "Parent/carer approval", "message": "is empty.", "fix": "Record YES once agreed."}]
ALERT = {
    **VISIT,
    "expected_return": START + dt.timedelta(hours=1),
    "grace_minutes": 30,
    "escalation_steps": ["Call the member of staff.", "Call the learner and the parent/carer."],
    "staff_phone": "07700 900123",
    "address": "1 Example Road, B23 6XX",
}
CONTEXTS = {
    "form": {**VISIT, "form_title": "Risk Assessment Form", "attachment_name": "HV-0042-risk-assessment.pdf"},
    "reminder": {**VISIT, "problems": PROBLEMS},
    "final_reminder": {**VISIT, "problems": PROBLEMS},
    "deadline_missed": VISIT,
    "overdue_alert": ALERT,
    "smt_alert": {**ALERT, "escalated_at": START + dt.timedelta(hours=1, minutes=30)},
    "admin_report": {
        "failures": [
            {
                "visit_id": "HV-0042",
                "kind": "overdue_alert",
                "failed_at": START,
                "error": "refused for good (550 5.1.1)",
                "recipients": [MANAGER],
            }
        ]
    },
}


@pytest.mark.parametrize("kind", mail.KINDS)
def test_every_kind_has_a_text_body(kind):
    text = mail.render_text(kind, {**CONTEXTS[kind], "school": "Demo College"})
    assert "HV-0042" in text and "Sent automatically by homevisits for Demo College." in text
    if kind != "admin_report":  # every time here is 09:00 or 10:00 in London, 08:00 or 09:00 in UTC
        assert "09:00" in text or "10:00" in text
        assert "08:00" not in text, "a time printed on the UTC clock"


def test_bodies_use_the_london_clock_across_the_clock_change():
    text = mail.render_text("overdue_alert", CONTEXTS["overdue_alert"])
    assert "expected back by Monday 30 March 2026 at 10:00" in text
    assert "1. Call the member of staff.\n  2. Call the learner and the parent/carer." in text
    assert "Phone taken on the visit: 07700 900123" in text
    deadline = mail.render_text("reminder", CONTEXTS["reminder"])
    assert "Deadline: Sunday 29 March 2026 at 09:00" in deadline
    assert "  - Parent/carer approval: is empty. Record YES once agreed." in deadline


def test_a_missing_template_variable_is_an_error_not_a_blank():
    context = dict(CONTEXTS["overdue_alert"])
    del context["escalation_steps"]
    with pytest.raises(UndefinedError):
        mail.render_text("overdue_alert", context)


def test_a_schools_own_email_template_comes_first(tmp_path):
    (tmp_path / "reminder.txt.j2").write_text("Our own words for {{ visit_id }}.\n")
    assert (
        mail.render_text("reminder", CONTEXTS["reminder"], template_dir=tmp_path)
        == "Our own words for HV-0042.\n"
    )


def test_a_schools_template_added_or_edited_between_messages_is_used_at_once(tmp_path):
    """The compiled templates are kept between messages, but only while the file found holds the same
    text: a school's file added after a message, or edited within the same clock tick, is used next time."""
    bundled = mail.render_text("reminder", CONTEXTS["reminder"], template_dir=tmp_path)
    assert "HV-0042" in bundled and not bundled.startswith("Ours")
    template = tmp_path / "reminder.txt.j2"
    template.write_text("Ours, first: {{ visit_id }}.\n")
    assert (
        mail.render_text("reminder", CONTEXTS["reminder"], template_dir=tmp_path) == "Ours, first: HV-0042.\n"
    )
    stamp = template.stat().st_mtime_ns
    template.write_text("Ours, again: {{ visit_id }}.\n")
    os.utime(template, ns=(stamp, stamp))  # the same modification time as the first version
    assert (
        mail.render_text("reminder", CONTEXTS["reminder"], template_dir=tmp_path) == "Ours, again: HV-0042.\n"
    )
    template.unlink()
    assert mail.render_text("reminder", CONTEXTS["reminder"], template_dir=tmp_path) == bundled


def test_a_long_subject_reads_back_exactly():
    import email
    from email import policy

    subject = "URGENT: no safe return confirmed for home visit HV-0042 on Mon 23 Nov 2026"
    msg = mail.build_message(
        sender="homevisits@school.example",
        to=["dsl@school.example"],
        subject=subject,
        text="body",
        message_id="<1@school.example>",
    )
    parsed = email.message_from_bytes(msg.as_bytes(policy=mail.SMTP_POLICY), policy=policy.default)
    assert parsed["Subject"] == subject
