#include "dht/record.h"

#include "gtest/gtest.h"
#include "hivemind/wire/buffer.h"

namespace hivemind {
namespace internal {
namespace {

constexpr absl::string_view kKey = "run/progress";

KeyPair Keys() {
  auto keys = GenerateKeyPair();
  EXPECT_TRUE(keys.ok()) << keys.status();
  return keys.ok() ? *keys : KeyPair{};
}

DhtRecord Sample(const KeyPair& writer) {
  return DhtRecord{"subkey", std::string("va\0lue", 6), writer.public_key,
                   absl::FromUnixMicros(1000), absl::FromUnixMicros(5000)};
}

std::string Signed(const DhtRecord& record, const KeyPair& signer,
                   absl::string_view key = kKey) {
  auto data = SignDhtRecord(key, record, signer);
  EXPECT_TRUE(data.ok()) << data.status();
  return data.ok() ? *data : std::string();
}

TEST(DhtRecord, SignedRecordsRoundTrip) {
  const KeyPair keys = Keys();
  const std::string data = Signed(Sample(keys), keys);
  auto read = ReadDhtRecord(kKey, data);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->subkey, "subkey");
  EXPECT_EQ(read->value, std::string("va\0lue", 6));
  EXPECT_EQ(read->writer, keys.public_key);
  EXPECT_EQ(read->stored_at, absl::FromUnixMicros(1000));
  EXPECT_EQ(read->expiration, absl::FromUnixMicros(5000));
  // Parsing alone gives the same fields and a signature; encoding it again gives the
  // same bytes.
  auto parsed = ParseDhtRecord(data);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->signature.size(), kSignatureSize);
  EXPECT_EQ(EncodeDhtRecord(*parsed), data);
}

TEST(DhtRecord, OnlyTheWriterCanSign) {
  const KeyPair writer = Keys();
  const KeyPair other = Keys();
  // A node cannot sign a record in someone else's name...
  EXPECT_EQ(SignDhtRecord(kKey, Sample(writer), other).status().code(),
            absl::StatusCode::kInvalidArgument);
  // ...and a record claiming a writer but signed by another key is rejected.
  SignedDhtRecord forged{Sample(writer), ""};
  forged.signature = *Sign(other, DhtRecordSigningMessage(kKey, forged.record));
  EXPECT_EQ(ReadDhtRecord(kKey, EncodeDhtRecord(forged)).status().code(),
            absl::StatusCode::kUnauthenticated);
  // A malformed signer is an error, not a crash.
  EXPECT_EQ(
      SignDhtRecord(kKey, Sample(writer), {writer.public_key, "bad"}).status().code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(DhtRecord, EveryFieldAndTheKeyAreSigned) {
  const KeyPair keys = Keys();
  const DhtRecord genuine = Sample(keys);
  auto parsed = ParseDhtRecord(Signed(genuine, keys));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const std::string signature = parsed->signature;
  ASSERT_TRUE(ReadDhtRecord(kKey, EncodeDhtRecord({genuine, signature})).ok());
  std::vector<DhtRecord> edits(5, genuine);
  edits[0].subkey = "other";
  edits[1].value = "forged";
  edits[2].writer = Keys().public_key;
  edits[3].stored_at += absl::Microseconds(1);
  edits[4].expiration += absl::Hours(1);
  for (const DhtRecord& edited : edits) {
    EXPECT_EQ(ReadDhtRecord(kKey, EncodeDhtRecord({edited, signature})).status().code(),
              absl::StatusCode::kUnauthenticated);
  }
  // Replayed under another key (or another run's same key): rejected.
  const std::string data = Signed(genuine, keys);
  EXPECT_EQ(ReadDhtRecord("run/state", data).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(ReadDhtRecord("other-run/progress", data).status().code(),
            absl::StatusCode::kUnauthenticated);
  // A flipped signature bit.
  std::string flipped = data;
  flipped.back() ^= 1;
  EXPECT_EQ(ReadDhtRecord(kKey, flipped).status().code(),
            absl::StatusCode::kUnauthenticated);
}

TEST(DhtRecord, UnsignedVersionOneRecordsAreRejected) {
  // A version-1 record: the same fields without a signature.
  wire::Writer w;
  w.PutU8(1);
  w.PutBytes("subkey");
  w.PutBytes(Keys().public_key);
  w.PutU64(1000);
  w.PutU64(5000);
  w.PutBytes("value");
  const std::string v1 = w.Release();
  EXPECT_EQ(ParseDhtRecord(v1).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(ReadDhtRecord(kKey, v1).status().code(), absl::StatusCode::kDataLoss);
}

TEST(DhtRecord, MalformedRecordsAreDataLoss) {
  const KeyPair keys = Keys();
  const std::string good = Signed(Sample(keys), keys);
  for (size_t len = 0; len < good.size(); ++len) {
    EXPECT_EQ(ParseDhtRecord(good.substr(0, len)).status().code(),
              absl::StatusCode::kDataLoss)
        << len;
  }
  EXPECT_EQ(ParseDhtRecord(good + "x").status().code(), absl::StatusCode::kDataLoss);
  for (char version : {2, 4}) {  // 2: signed over the key's name, an older release
    std::string other_version = good;
    other_version[0] = version;
    EXPECT_EQ(ParseDhtRecord(other_version).status().code(), absl::StatusCode::kDataLoss)
        << int{version};
  }
  // A time that does not fit an int64 of microseconds (found by the fuzzer).
  std::string huge = good;
  const size_t expiration_at = 1 + 4 + 6 + 4 + 40 + 8;
  for (size_t i = 0; i < 8; ++i) huge[expiration_at + i] = '\xff';
  EXPECT_EQ(ParseDhtRecord(huge).status().code(), absl::StatusCode::kDataLoss);
  DhtRecord backwards = Sample(keys);
  backwards.expiration = absl::FromUnixMicros(10);
  EXPECT_EQ(ParseDhtRecord(Signed(backwards, keys)).status().code(),
            absl::StatusCode::kDataLoss);
  // A signature of the wrong size.
  SignedDhtRecord short_signature = *ParseDhtRecord(good);
  short_signature.signature.pop_back();
  EXPECT_EQ(ParseDhtRecord(EncodeDhtRecord(short_signature)).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(DhtRecord, OnlyANewerRecordOfTheSameWriterAndSubkeyMayReplaceOne) {
  const KeyPair writer = Keys();
  const KeyPair attacker = Keys();
  const DhtRecord old_record = Sample(writer);
  DhtRecord newer = old_record;
  newer.value = "newer";
  newer.stored_at += absl::Microseconds(1);
  const std::string current = Signed(old_record, writer);
  EXPECT_TRUE(MayReplaceDhtRecord(kKey, current, Signed(newer, writer)));
  // Not the same record again, nor an older one (a replay rolling the writer back).
  EXPECT_FALSE(MayReplaceDhtRecord(kKey, current, current));
  EXPECT_FALSE(MayReplaceDhtRecord(kKey, Signed(newer, writer), current));
  // Not another subkey of the writer, nor another writer's record.
  DhtRecord other_subkey = newer;
  other_subkey.subkey = "other";
  EXPECT_FALSE(MayReplaceDhtRecord(kKey, current, Signed(other_subkey, writer)));
  DhtRecord attackers = newer;
  attackers.writer = attacker.public_key;
  EXPECT_FALSE(MayReplaceDhtRecord(kKey, current, Signed(attackers, attacker)));
  // Not a forgery in the writer's name, nor a record signed for another key.
  SignedDhtRecord forged{newer, *Sign(attacker, DhtRecordSigningMessage(kKey, newer))};
  EXPECT_FALSE(MayReplaceDhtRecord(kKey, current, EncodeDhtRecord(forged)));
  EXPECT_FALSE(MayReplaceDhtRecord(kKey, current, Signed(newer, writer, "run/other")));
  EXPECT_FALSE(MayReplaceDhtRecord(kKey, current, "garbage"));
  // Bytes that are no valid record give way to any record that is.
  EXPECT_TRUE(MayReplaceDhtRecord(kKey, "garbage", Signed(Sample(attacker), attacker)));
}

}  // namespace
}  // namespace internal
}  // namespace hivemind
