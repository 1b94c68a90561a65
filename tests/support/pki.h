// The test PKI: two CAs and the certificates of the mTLS matrix (admin, viewer, unknown, no
// subject, another CA's, expired, the server's for 127.0.0.1/localhost), made with the openssl
// CLI in a temporary directory. Header-only; used by the API and end-to-end tests.
#pragma once

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "support/run.h"

namespace edgeward::testing {

// Two CAs and the certificates of the matrix, made once for the whole suite.
class Pki {
 public:
  Pki() {
    std::string script = R"(set -e
cd ")" + dir_.path() + R"("
exec >openssl.log 2>&1
ca() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $1.key \
  -out $1.crt -days 3650 -subj "/CN=$2"; }
# leaf NAME SUBJECT CA EXTENSION...: key, CSR and a certificate signed by CA.
leaf() {
  name=$1 subj=$2 ca=$3
  shift 3
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $name.key \
    -out $name.csr -subj "$subj"
  printf '%s\n' "$@" > $name.ext
  openssl x509 -req -in $name.csr -CA $ca.crt -CAkey $ca.key -CAcreateserial -days 30 \
    -out $name.crt -extfile $name.ext
}
ca ca "edgeward test CA"
ca otherca "someone else's CA"
leaf server "/CN=edgeward-agent" ca "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  "extendedKeyUsage=serverAuth"
leaf admin "/CN=admin-alice" ca "extendedKeyUsage=clientAuth"
leaf viewer "/CN=viewer-bob" ca "subjectAltName=URI:spiffe://edgeward.test/ops/viewer" \
  "extendedKeyUsage=clientAuth"
leaf unknown "/CN=mallory" ca "extendedKeyUsage=clientAuth"
leaf anon "/O=edgeward test" ca "subjectAltName=DNS:anon.example"
leaf foreign "/CN=admin-alice" otherca "extendedKeyUsage=clientAuth"
# Expired: openssl x509 -req cannot backdate in 3.0; openssl ca can (-startdate/-enddate).
mkdir -p cadb && : > cadb/index.txt && echo 1000 > cadb/serial
cat > ca.cnf <<'EOF'
[ca]
default_ca = test
[test]
database = cadb/index.txt
new_certs_dir = cadb
serial = cadb/serial
default_md = sha256
policy = any
[any]
commonName = supplied
EOF
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout expired.key \
  -out expired.csr -subj "/CN=admin-alice"
openssl ca -batch -config ca.cnf -cert ca.crt -keyfile ca.key -notext \
  -startdate 20200101000000Z -enddate 20200102000000Z -in expired.csr -out expired.crt
)";
    ok_ = std::system(("sh " + dir_.file("make-pki.sh", script)).c_str()) == 0;
  }

  bool ok() const { return ok_; }
  const std::string& dir() const { return dir_.path(); }
  std::string file(const std::string& name) const { return dir_.file(name); }
  std::string log() const {
    std::ifstream in(file("openssl.log"));
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

 private:
  TempDir dir_{"ewapi"};
  bool ok_ = false;
};

}  // namespace edgeward::testing
