"""What the guest's _ssl needs to know about certificates without OpenSSL: PEM/DER framing, the dict
form of getpeercert() (CPython's layout), and the few ASN.1 objects ssl.py looks up by name.

Only reading: every check on a certificate is the host's.
"""

import base64
import ipaddress

# (nid, short name, long name, OID) of the objects ssl.py and common libraries look up
_OBJECTS = [
    (129, "serverAuth", "TLS Web Server Authentication", "1.3.6.1.5.5.7.3.1"),
    (130, "clientAuth", "TLS Web Client Authentication", "1.3.6.1.5.5.7.3.2"),
    (131, "codeSigning", "Code Signing", "1.3.6.1.5.5.7.3.3"),
    (132, "emailProtection", "E-mail Protection", "1.3.6.1.5.5.7.3.4"),
    (13, "CN", "commonName", "2.5.4.3"),
    (14, "C", "countryName", "2.5.4.6"),
    (15, "L", "localityName", "2.5.4.7"),
    (16, "ST", "stateOrProvinceName", "2.5.4.8"),
    (17, "O", "organizationName", "2.5.4.10"),
    (18, "OU", "organizationalUnitName", "2.5.4.11"),
    (105, "serialNumber", "serialNumber", "2.5.4.5"),
    (660, "street", "streetAddress", "2.5.4.9"),
    (661, "postalCode", "postalCode", "2.5.4.17"),
    (100, "SN", "surname", "2.5.4.4"),
    (99, "GN", "givenName", "2.5.4.42"),
    (106, "title", "title", "2.5.4.12"),
    (174, "dnQualifier", "dnQualifier", "2.5.4.46"),
    (510, "pseudonym", "pseudonym", "2.5.4.65"),
    (1089, "organizationIdentifier", "organizationIdentifier", "2.5.4.97"),
    (48, "emailAddress", "emailAddress", "1.2.840.113549.1.9.1"),
    (391, "DC", "domainComponent", "0.9.2342.19200300.100.1.25"),
    (458, "UID", "userId", "0.9.2342.19200300.100.1.1"),
]
_BY_OID = {oid: entry for entry in _OBJECTS for oid in [entry[3]]}


def lookup_object(txt, by_name=False):
    for entry in _OBJECTS:
        if entry[3] == txt or (by_name and txt in (entry[1], entry[2])):
            return entry
    return None


def object_by_nid(nid):
    return next((entry for entry in _OBJECTS if entry[0] == nid), None)


# -- PEM and DER framing ------------------------------------------------------------------------------
def pem_to_ders(data):
    """Every CERTIFICATE block of a PEM text (other blocks skipped), DER."""
    out = []
    text = bytes(data)
    begin, end = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
    at = 0
    while True:
        start = text.find(begin, at)
        if start < 0:
            return out
        stop = text.find(end, start)
        if stop < 0:
            return out
        out.append(base64.b64decode(b"".join(text[start + len(begin):stop].split())))
        at = stop + len(end)


def split_ders(data):
    """Concatenated DER certificates (cadata as bytes) as a list."""
    out, at = [], 0
    while at < len(data):
        tag, start, stop = _tlv(data, at)
        if tag != 0x30:
            raise ValueError("cadata does not hold DER certificates")
        out.append(bytes(data[at:stop]))
        at = stop
    return out


def der_to_pem(der):
    body = base64.b64encode(der).decode("ascii")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


# -- DER -------------------------------------------------------------------------------------------------
def _tlv(data, at):
    """(tag, content start, content end) of the element at `at`."""
    tag = data[at]
    n = data[at + 1]
    at += 2
    if n & 0x80:
        count = n & 0x7F
        n = int.from_bytes(data[at:at + count], "big")
        at += count
    if at + n > len(data):
        raise ValueError("truncated DER")
    return tag, at, at + n


def _children(data, start, stop):
    out = []
    while start < stop:
        tag, s, e = _tlv(data, start)
        out.append((tag, s, e))
        start = e
    return out


def _oid(raw):
    first = raw[0]
    parts = [first // 40 if first < 80 else 2, first % 40 if first < 80 else first - 80]
    value = 0
    for byte in raw[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(str(p) for p in parts)


def _string(tag, raw):
    if tag == 0x1E:
        return raw.decode("utf-16-be", "replace")
    if tag == 0x1C:
        return raw.decode("utf-32-be", "replace")
    if tag == 0x14:
        return raw.decode("latin-1")
    return raw.decode("utf-8", "replace")


def _name(data, start, stop):
    """An X.509 Name as CPython's tuple of RDN tuples of (long name, value)."""
    rdns = []
    for _, s, e in _children(data, start, stop):  # SET
        rdn = []
        for _, s2, e2 in _children(data, s, e):  # SEQUENCE { type, value }
            (t1, a1, b1), (t2, a2, b2) = _children(data, s2, e2)[:2]
            oid = _oid(data[a1:b1])
            entry = _BY_OID.get(oid)
            rdn.append((entry[2] if entry else oid, _string(t2, bytes(data[a2:b2]))))
        rdns.append(tuple(rdn))
    return tuple(rdns)


_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def _time(tag, raw):
    """UTCTime / GeneralizedTime as OpenSSL prints it: 'Jan  5 09:34:43 2018 GMT'."""
    text = raw.decode("ascii").rstrip("Z")
    if tag == 0x17:
        year = int(text[:2])
        year += 2000 if year < 50 else 1900
        text = text[2:]
    else:
        year = int(text[:4])
        text = text[4:]
    month, day, hour, minute, second = (int(text[i:i + 2]) for i in range(0, 10, 2))
    return f"{_MONTHS[month - 1]} {day:2d} {hour:02d}:{minute:02d}:{second:02d} {year} GMT"


def _general_names(data, start, stop):
    out = []
    for tag, s, e in _children(data, start, stop):
        raw = bytes(data[s:e])
        kind = tag & 0x1F
        if kind == 2:
            out.append(("DNS", raw.decode("ascii", "replace")))
        elif kind == 1:
            out.append(("email", raw.decode("ascii", "replace")))
        elif kind == 6:
            out.append(("URI", raw.decode("ascii", "replace")))
        elif kind == 7:
            if len(raw) == 4:
                out.append(("IP Address", str(ipaddress.IPv4Address(raw))))
            elif len(raw) == 16:
                groups = [int.from_bytes(raw[i:i + 2], "big") for i in range(0, 16, 2)]
                out.append(("IP Address", ":".join(f"{g:X}" for g in groups)))
            else:
                out.append(("IP Address", "<invalid>"))
        elif kind == 4:
            out.append(("DirName", _name(data, *_children(data, s, e)[0][1:])))
        elif kind == 8:
            out.append(("Registered ID", _oid(raw)))
        else:
            out.append(("othername", "<unsupported>"))
    return tuple(out)


def _tbs(der):
    data = memoryview(der)
    _, s, e = _tlv(data, 0)
    _, ts, te = _children(data, s, e)[0]
    return data, _children(data, ts, te)


def decode_certificate(der):
    """getpeercert()'s dict, with CPython's keys and layouts."""
    data, fields = _tbs(der)
    i = 0
    version = 1
    if fields[0][0] == 0xA0:
        _, vs, ve = _children(data, fields[0][1], fields[0][2])[0]
        version = int.from_bytes(data[vs:ve], "big") + 1
        i = 1
    serial_tag, ss, se = fields[i]
    serial = format(int.from_bytes(data[ss:se], "big"), "X")
    if len(serial) % 2:
        serial = "0" + serial
    issuer = _name(data, fields[i + 2][1], fields[i + 2][2])
    (t1, a1, b1), (t2, a2, b2) = _children(data, fields[i + 3][1], fields[i + 3][2])
    subject = _name(data, fields[i + 4][1], fields[i + 4][2])
    out = {"subject": subject, "issuer": issuer, "version": version, "serialNumber": serial,
           "notBefore": _time(t1, bytes(data[a1:b1])), "notAfter": _time(t2, bytes(data[a2:b2]))}
    for tag, s, e in fields[i + 6:]:
        if tag != 0xA3:
            continue
        _, es, ee = _children(data, s, e)[0]
        for _, xs, xe in _children(data, es, ee):
            parts = _children(data, xs, xe)
            oid = _oid(bytes(data[parts[0][1]:parts[0][2]]))
            _, vs, ve = parts[-1]  # OCTET STRING around the value
            _, inner_s, inner_e = _tlv(data, vs)
            if oid == "2.5.29.17":
                out["subjectAltName"] = _general_names(data, inner_s, inner_e)
            elif oid == "1.3.6.1.5.5.7.1.1":
                ocsp, issuers = [], []
                for _, ds, de in _children(data, inner_s, inner_e):
                    (mt, ms, me), (lt, ls, le) = _children(data, ds, de)
                    method = _oid(bytes(data[ms:me]))
                    if lt & 0x1F == 6:
                        uri = bytes(data[ls:le]).decode("ascii", "replace")
                        (ocsp if method == "1.3.6.1.5.5.7.48.1" else issuers).append(uri)
                if ocsp:
                    out["OCSP"] = tuple(ocsp)
                if issuers:
                    out["caIssuers"] = tuple(issuers)
            elif oid == "2.5.29.31":
                uris = []
                for _, ds, de in _children(data, inner_s, inner_e):
                    for tag2, ps, pe in _children(data, ds, de):
                        if tag2 == 0xA0:  # distributionPoint [0] { fullName [0] GeneralNames }
                            for tag3, fs, fe in _children(data, ps, pe):
                                if tag3 == 0xA0:
                                    uris += [v for k, v in _general_names(data, fs, fe) if k == "URI"]
                if uris:
                    out["crlDistributionPoints"] = tuple(uris)
    return out


def subject_text(der):
    try:
        subject = decode_certificate(der)["subject"]
    except (ValueError, IndexError):
        return "?"
    return ",".join(f"{k}={v}" for rdn in subject for k, v in rdn)
