//! The verifier against requests botocore 1.44 signed.

use super::*;
use http::{HeaderName, HeaderValue};

// Raw requests as botocore 1.44 signed and sent them (boto3's `s3vectors` client, key
// AKIDEXAMPLE, signing time pinned to 20250715T123045Z), captured off the wire by a small
// HTTP server. The last two were signed by botocore's SigV4Auth with x-amz-content-sha256
// set, as S3-style clients send it.
const LIST_VECTOR_BUCKETS: &str = r#"POST /ListVectorBuckets HTTP/1.1
Host: 127.0.0.1:18799
Accept-Encoding: identity
Content-Type: application/json
User-Agent: Boto3/1.44.18 md/Botocore#1.44.18 ua/2.1 os/linux#6.18.44-fc-v1272 md/arch#x86_64 lang/python#3.11.7 md/pyimpl#CPython m/e,N,Z,b,E cfg/retry-mode#standard Botocore/1.44.18
X-Amz-Date: 20250715T123045Z
Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250715/us-east-1/s3vectors/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=84426b3fc303e889da5fe999529ffee07028766fe61cea8c4e3039eef002b720
amz-sdk-invocation-id: 51bd8f39-b3ac-4c72-b1bd-93996a652703
amz-sdk-request: attempt=1; max=2
Content-Length: 2

{}"#;

const PUT_VECTORS: &str = r#"POST /PutVectors HTTP/1.1
Host: 127.0.0.1:18799
Accept-Encoding: identity
Content-Type: application/json
User-Agent: Boto3/1.44.18 md/Botocore#1.44.18 ua/2.1 os/linux#6.18.44-fc-v1272 md/arch#x86_64 lang/python#3.11.7 md/pyimpl#CPython m/e,N,Z,b,E cfg/retry-mode#standard Botocore/1.44.18
X-Amz-Date: 20250715T123045Z
Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250715/us-east-1/s3vectors/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=268b99c6ad2de52282fd4afc84a89d98a57a828392a474a3e54a0b8e2eef18d6
amz-sdk-invocation-id: de4ec882-05e3-4eb0-a529-63d781f44619
amz-sdk-request: attempt=1; max=2
Content-Length: 139

{"vectorBucketName": "bkt", "indexName": "idx", "vectors": [{"key": "k1", "data": {"float32": [0.5, 1.0]}, "metadata": {"genre": "jazz"}}]}"#;

const QUERY_VECTORS: &str = r#"POST /QueryVectors HTTP/1.1
Host: 127.0.0.1:18799
Accept-Encoding: identity
Content-Type: application/json
User-Agent: Boto3/1.44.18 md/Botocore#1.44.18 ua/2.1 os/linux#6.18.44-fc-v1272 md/arch#x86_64 lang/python#3.11.7 md/pyimpl#CPython m/e,N,Z,b,E cfg/retry-mode#standard Botocore/1.44.18
X-Amz-Date: 20250715T123045Z
Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250715/us-east-1/s3vectors/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=a6268523a45191d6c2ba26be07f6f821e23d8da32c222dcaaa57b9390850fa98
amz-sdk-invocation-id: 0fdc0936-526b-4cf3-975d-229542f5250e
amz-sdk-request: attempt=1; max=2
Content-Length: 98

{"vectorBucketName": "bkt", "indexName": "idx", "queryVector": {"float32": [0.5, 1.0]}, "topK": 3}"#;

const TAG_RESOURCE: &str = r#"POST /tags/arn%3Aaws%3As3vectors%3Aus-east-1%3A123456789012%3Abucket%2Fbkt HTTP/1.1
Host: 127.0.0.1:18799
Accept-Encoding: identity
Content-Type: application/json
User-Agent: Boto3/1.44.18 md/Botocore#1.44.18 ua/2.1 os/linux#6.18.44-fc-v1272 md/arch#x86_64 lang/python#3.11.7 md/pyimpl#CPython m/e,N,Z,b,E cfg/retry-mode#standard Botocore/1.44.18
X-Amz-Date: 20250715T123045Z
Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250715/us-east-1/s3vectors/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=7b27c3e855c93fa9d39a82be2301b4798c0fa061383e211c45a129dfed74c7dc
amz-sdk-invocation-id: d4a81d68-fc04-4610-bfed-256818beca12
amz-sdk-request: attempt=1; max=2
Content-Length: 28

{"tags": {"team": "search"}}"#;

const UNTAG_RESOURCE: &str = r#"DELETE /tags/arn%3Aaws%3As3vectors%3Aus-east-1%3A123456789012%3Abucket%2Fbkt?tagKeys=team&tagKeys=env HTTP/1.1
Host: 127.0.0.1:18799
Accept-Encoding: identity
User-Agent: Boto3/1.44.18 md/Botocore#1.44.18 ua/2.1 os/linux#6.18.44-fc-v1272 md/arch#x86_64 lang/python#3.11.7 md/pyimpl#CPython m/e,N,Z,b,E cfg/retry-mode#standard Botocore/1.44.18
X-Amz-Date: 20250715T123045Z
Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250715/us-east-1/s3vectors/aws4_request, SignedHeaders=host;x-amz-date, Signature=ef0e8f4f6b931198fe9445817e239212d3691a52106571230927bb805bb1824d
amz-sdk-invocation-id: 4f4008ae-485c-4499-8816-a462d2588df4
amz-sdk-request: attempt=1; max=2
Content-Length: 0

"#;

const LIST_TAGS_FOR_RESOURCE: &str = r#"GET /tags/arn%3Aaws%3As3vectors%3Aus-east-1%3A123456789012%3Abucket%2Fbkt HTTP/1.1
Host: 127.0.0.1:18799
Accept-Encoding: identity
User-Agent: Boto3/1.44.18 md/Botocore#1.44.18 ua/2.1 os/linux#6.18.44-fc-v1272 md/arch#x86_64 lang/python#3.11.7 md/pyimpl#CPython m/e,N,Z,b,E cfg/retry-mode#standard Botocore/1.44.18
X-Amz-Date: 20250715T123045Z
Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250715/us-east-1/s3vectors/aws4_request, SignedHeaders=host;x-amz-date, Signature=a7f95c73034c032bac3a60aa43040e54a2e3bbbac7fab5c9cc2ffce8bc6047ef
amz-sdk-invocation-id: 4f468b64-dfb5-4947-a58b-ba2a520f967f
amz-sdk-request: attempt=1; max=2

"#;

const WITH_CONTENT_SHA256: &str = r#"POST /GetVectorBucket HTTP/1.1
Host: 127.0.0.1:18799
Accept-Encoding: identity
User-Agent: python-urllib3/2.8.0
Content-Type: application/json
X-Amz-Content-SHA256: a1b01f7317129e591effe85563562af370d2236a6eb8f09e9a742cd3ea0ec668
X-Amz-Date: 20250715T123045Z
Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250715/us-east-1/s3vectors/aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date, Signature=ba50e7d918b9cb69ff4706d30d62f337d8791ee72d932d8d87831174dbcd667f
Content-Length: 27

{"vectorBucketName": "bkt"}"#;

const UNSIGNED_PAYLOAD: &str = r#"POST /GetVectorBucket HTTP/1.1
Host: 127.0.0.1:18799
Accept-Encoding: identity
User-Agent: python-urllib3/2.8.0
Content-Type: application/json
X-Amz-Content-SHA256: UNSIGNED-PAYLOAD
X-Amz-Date: 20250715T123045Z
Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250715/us-east-1/s3vectors/aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date, Signature=0b18bc55212f88763258586029033d66322d406cd1e094f1b1f758ffa827c81d
Content-Length: 27

{"vectorBucketName": "bkt"}"#;

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const SKEW: Duration = Duration::from_secs(15 * 60);

struct Raw {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Vec<u8>,
}

fn parse(raw: &str) -> Raw {
    let (head, body) = raw.split_once("\n\n").expect("blank line after the headers");
    let mut lines = head.lines();
    let mut request_line = lines.next().expect("request line").split(' ');
    let method = Method::from_bytes(request_line.next().expect("method").as_bytes()).expect("method");
    let uri = request_line.next().expect("target").parse().expect("target");
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(": ").expect("header line");
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    Raw {
        method,
        uri,
        headers,
        body: body.as_bytes().to_vec(),
    }
}

fn verifier_with(secret: &str) -> Verifier {
    let keys = vec![
        AccessKey {
            id: "AKIDOTHER".into(),
            secret: "another secret".into(),
        },
        AccessKey {
            id: "AKIDEXAMPLE".into(),
            secret: secret.into(),
        },
    ];
    Verifier::new(keys, "us-east-1", "s3vectors", SKEW)
}

fn signed_at() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_752_582_645) // 2025-07-15T12:30:45Z
}

fn check_at(v: &Verifier, r: &Raw, now: SystemTime) -> Result<String, Refused> {
    v.verify(&r.method, &r.uri, &r.headers, &r.body, now).map(str::to_owned)
}

fn check(r: &Raw) -> Result<String, Refused> {
    check_at(&verifier_with(SECRET), r, signed_at())
}

fn set_header(r: &mut Raw, name: &'static str, value: &str) {
    r.headers.insert(name, HeaderValue::from_str(value).unwrap());
}

fn edit_authorization(r: &mut Raw, from: &str, to: &str) {
    let auth = r.headers[http::header::AUTHORIZATION]
        .to_str()
        .unwrap()
        .replacen(from, to, 1);
    set_header(r, "authorization", &auth);
}

const ALL: [&str; 7] = [
    LIST_VECTOR_BUCKETS,
    PUT_VECTORS,
    QUERY_VECTORS,
    TAG_RESOURCE,
    UNTAG_RESOURCE,
    LIST_TAGS_FOR_RESOURCE,
    WITH_CONTENT_SHA256,
];
// A POST with a JSON body, a tag operation with an encoded ARN in the path, and an
// UntagResource with a query string.
const MUTATED: [&str; 3] = [PUT_VECTORS, TAG_RESOURCE, UNTAG_RESOURCE];

#[test]
fn accepts_what_botocore_signed() {
    for raw in ALL {
        assert_eq!(check(&parse(raw)).as_deref(), Ok("AKIDEXAMPLE"), "{raw}");
    }
}

#[test]
fn accepts_at_the_edges_of_the_skew_window() {
    let v = verifier_with(SECRET);
    for raw in MUTATED {
        let r = parse(raw);
        assert!(check_at(&v, &r, signed_at() + SKEW).is_ok());
        assert!(check_at(&v, &r, signed_at() - SKEW).is_ok());
    }
}

#[test]
fn refuses_a_wrong_secret() {
    let v = verifier_with("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEz");
    for raw in MUTATED {
        assert_eq!(
            check_at(&v, &parse(raw), signed_at()),
            Err(Refused::SignatureMismatch),
            "{raw}"
        );
    }
}

#[test]
fn refuses_a_changed_body_byte() {
    for raw in MUTATED {
        let mut r = parse(raw);
        match r.body.first_mut() {
            Some(b) => *b ^= 1,
            None => r.body.push(b' '),
        }
        assert_eq!(check(&r), Err(Refused::SignatureMismatch), "{raw}");
    }
}

#[test]
fn refuses_a_changed_path() {
    for raw in MUTATED {
        let mut r = parse(raw);
        let target = r.uri.to_string();
        let path_end = target.find('?').unwrap_or(target.len());
        let mut bytes = target.into_bytes();
        bytes[path_end - 1] += 1;
        r.uri = String::from_utf8(bytes).unwrap().parse().unwrap();
        assert_eq!(check(&r), Err(Refused::SignatureMismatch), "{raw}");
    }
}

#[test]
fn refuses_the_arn_path_unencoded() {
    // Same resource, but not the bytes that were signed: the path is signed as sent.
    let mut r = parse(TAG_RESOURCE);
    r.uri = "/tags/arn:aws:s3vectors:us-east-1:123456789012:bucket%2Fbkt"
        .parse()
        .unwrap();
    assert_eq!(check(&r), Err(Refused::SignatureMismatch));
}

#[test]
fn refuses_a_time_outside_the_skew_window() {
    let v = verifier_with(SECRET);
    let one = Duration::from_secs(1);
    for raw in MUTATED {
        let r = parse(raw);
        for now in [signed_at() + SKEW + one, signed_at() - SKEW - one] {
            assert_eq!(
                check_at(&v, &r, now),
                Err(Refused::OutsideSkewWindow { window_secs: 900 })
            );
        }
    }
    let message = Refused::OutsideSkewWindow { window_secs: 900 }.to_string();
    assert!(message.contains("900 seconds"), "{message}");
}

#[test]
fn refuses_an_unknown_key_id() {
    for raw in MUTATED {
        let mut r = parse(raw);
        edit_authorization(&mut r, "Credential=AKIDEXAMPLE/", "Credential=AKIDEXAMPLF/");
        assert_eq!(check(&r), Err(Refused::UnknownAccessKey), "{raw}");
        edit_authorization(&mut r, "Credential=AKIDEXAMPLF/", "Credential=AKIDEXAMPL/");
        assert_eq!(check(&r), Err(Refused::UnknownAccessKey), "{raw}");
    }
}

#[test]
fn signed_headers_count_and_others_do_not() {
    let mut r = parse(PUT_VECTORS);
    set_header(&mut r, "user-agent", "something else");
    r.headers.remove("amz-sdk-invocation-id");
    assert!(check(&r).is_ok());
    set_header(&mut r, "content-type", "application/x-amz-json-1.1");
    assert_eq!(check(&r), Err(Refused::SignatureMismatch));
    let mut r = parse(PUT_VECTORS);
    set_header(&mut r, "host", "127.0.0.1:18800");
    assert_eq!(check(&r), Err(Refused::SignatureMismatch));
}

#[test]
fn query_order_does_not_count_but_values_do() {
    let mut r = parse(UNTAG_RESOURCE);
    let path = r.uri.path().to_owned();
    r.uri = format!("{path}?tagKeys=env&tagKeys=team").parse().unwrap();
    assert!(check(&r).is_ok());
    r.uri = format!("{path}?tagKeys=env&tagKeys=teal").parse().unwrap();
    assert_eq!(check(&r), Err(Refused::SignatureMismatch));
    r.uri = path.parse().unwrap();
    assert_eq!(check(&r), Err(Refused::SignatureMismatch));
}

#[test]
fn content_sha256_must_hash_the_body() {
    let mut r = parse(WITH_CONTENT_SHA256);
    r.body[3] ^= 1;
    assert_eq!(check(&r), Err(Refused::SignatureMismatch));
    assert_eq!(check(&parse(UNSIGNED_PAYLOAD)), Err(Refused::UnsignedPayload));
}

#[test]
fn refuses_a_wrong_scope() {
    let scoped = |from: &str, to: &str| {
        let mut r = parse(PUT_VECTORS);
        edit_authorization(&mut r, from, to);
        check(&r)
    };
    let wrong = Err(Refused::WrongScope {
        region: "us-east-1".into(),
        service: "s3vectors".into(),
    });
    assert_eq!(scoped("/us-east-1/", "/us-west-2/"), wrong);
    assert_eq!(scoped("/s3vectors/", "/s3/"), wrong);
    assert!(matches!(
        scoped("/20250715/", "/20250716/"),
        Err(Refused::MalformedAuthorization(_))
    ));
}

#[test]
fn refuses_missing_or_malformed_parts() {
    let mut r = parse(PUT_VECTORS);
    r.headers.remove("authorization");
    assert_eq!(check(&r), Err(Refused::MissingAuthorization));

    let mut r = parse(PUT_VECTORS);
    r.headers.remove("x-amz-date");
    assert_eq!(check(&r), Err(Refused::MissingDate));
    set_header(&mut r, "x-amz-date", "2025-07-15T12:30:45Z");
    assert_eq!(check(&r), Err(Refused::MalformedDate));

    let mut r = parse(PUT_VECTORS);
    edit_authorization(&mut r, "AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256");
    assert_eq!(check(&r), Err(Refused::UnsupportedAlgorithm));

    let malformed = |from: &str, to: &str| {
        let mut r = parse(PUT_VECTORS);
        edit_authorization(&mut r, from, to);
        matches!(check(&r), Err(Refused::MalformedAuthorization(_)))
    };
    assert!(malformed("Signature=", "Signature=A"));
    assert!(malformed("Signature=2", "Signature=")); // 63 digits
    assert!(malformed("/aws4_request", "/aws4"));
    assert!(malformed(", SignedHeaders=content-type;host;x-amz-date", ""));
    assert!(malformed(
        "SignedHeaders=content-type;host;",
        "SignedHeaders=content-type;"
    ));
    assert!(malformed("SignedHeaders=content-type;", "SignedHeaders=Content-Type;"));
    assert!(malformed("Credential", "Credential=x, Credential"));
    let mut r = parse(PUT_VECTORS);
    set_header(&mut r, "authorization", "AWS4-HMAC-SHA256");
    assert!(matches!(check(&r), Err(Refused::MalformedAuthorization(_))));

    // A presigned URL is not an Authorization header.
    let mut r = parse(LIST_TAGS_FOR_RESOURCE);
    r.headers.remove("authorization");
    r.uri = format!("{}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=00", r.uri.path())
        .parse()
        .unwrap();
    let refused = check(&r).unwrap_err();
    assert!(refused.to_string().contains("presigned URLs are not supported"));
}

#[test]
fn secrets_and_signatures_stay_out_of_debug_and_messages() {
    let key = AccessKey {
        id: "AKIDEXAMPLE".into(),
        secret: SECRET.into(),
    };
    assert!(!format!("{key:?}").contains(SECRET));
    let v = verifier_with(SECRET);
    let printed = format!("{v:?}");
    assert!(
        !printed.contains(SECRET) && printed.contains("AKIDEXAMPLE"),
        "{printed}"
    );

    let hex64 = |s: &str| s.as_bytes().windows(64).any(|w| w.iter().all(u8::is_ascii_hexdigit));
    let mut r = parse(PUT_VECTORS);
    r.body[0] ^= 1;
    let refused = check(&r).unwrap_err();
    for message in [refused.to_string(), format!("{refused:?}")] {
        assert!(!message.contains(SECRET) && !hex64(&message), "{message}");
    }
}

#[test]
fn parses_amz_dates() {
    let at = |s| parse_amz_date(s).map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs());
    assert_eq!(parse_amz_date("20250715T123045Z"), Some(signed_at()));
    assert_eq!(at("19700101T000000Z"), Some(0));
    assert_eq!(at("20000229T000000Z"), Some(951_782_400));
    assert_eq!(at("21000301T235959Z"), Some(4_107_628_799));
    for bad in [
        "20010229T000000Z",
        "20251315T000000Z",
        "20250715T243045Z",
        "20250715T123045",
        "2025071xT123045Z",
    ] {
        assert_eq!(parse_amz_date(bad), None, "{bad}");
    }
}
