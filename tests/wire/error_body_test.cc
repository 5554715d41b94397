#include "hivemind/wire/error_body.h"

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "gtest/gtest.h"
#include "hivemind/wire/buffer.h"
#include "hivemind/wire/frame.h"

namespace hivemind {
namespace wire {
namespace {

absl::StatusCode ParseCode(absl::string_view body) {
  return ParseErrorBody(body).status().code();
}

std::string BodyWith(uint8_t code, absl::string_view message) {
  Writer w;
  w.PutU8(code);
  w.PutBytes(message);
  return w.Release();
}

void ExpectRoundTrip(const absl::Status& status) {
  absl::StatusOr<absl::Status> parsed = ParseErrorBody(EncodeErrorBody(status));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, status);
}

TEST(ErrorBody, RoundTripsEveryErrorCode) {
  for (int code = 1; code <= 16; ++code) {
    SCOPED_TRACE(code);
    ExpectRoundTrip(absl::Status(static_cast<absl::StatusCode>(code), "peer said no"));
  }
}

TEST(ErrorBody, RoundTripsSeveralStatuses) {
  ExpectRoundTrip(absl::DeadlineExceededError("peer 10.0.0.7 did not answer in 5 s"));
  ExpectRoundTrip(absl::AbortedError("group changed mid-round"));
  ExpectRoundTrip(absl::DataLossError(std::string("binary \0 message", 16)));
  ExpectRoundTrip(absl::UnknownError(""));
}

TEST(ErrorBody, LayoutIsCodeThenLengthPrefixedMessage) {
  EXPECT_EQ(EncodeErrorBody(absl::UnavailableError("down")),
            std::string("\x0e\x04\x00\x00\x00"
                        "down",
                        9));
}

TEST(ErrorBody, CapsTenKibMessage) {
  std::string message(size_t{10} * 1024, 'm');
  for (size_t i = 0; i < message.size(); ++i) {
    message[i] = static_cast<char>('a' + i % 26);
  }
  const std::string body = EncodeErrorBody(absl::InternalError(message));
  EXPECT_EQ(body.size(), 1 + 4 + kMaxErrorMessageSize);
  absl::StatusOr<absl::Status> parsed = ParseErrorBody(body);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->code(), absl::StatusCode::kInternal);
  EXPECT_EQ(parsed->message(), message.substr(0, kMaxErrorMessageSize));
}

TEST(ErrorBody, KeepsMessageExactlyAtCap) {
  ExpectRoundTrip(absl::InternalError(std::string(kMaxErrorMessageSize, 'x')));
}

TEST(ErrorBody, CapDoesNotSplitUtf8Sequence) {
  // "\xe2\x82\xac" is the euro sign; place it across the cap.
  std::string message(kMaxErrorMessageSize - 1, 'x');
  message += "\xe2\x82\xac and more";
  absl::StatusOr<absl::Status> parsed =
      ParseErrorBody(EncodeErrorBody(absl::InternalError(message)));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->message(), std::string(kMaxErrorMessageSize - 1, 'x'));
}

TEST(ErrorBody, TravelsInsideAnErrorFrame) {
  const absl::Status status = absl::ResourceExhaustedError("queue full");
  const std::string frame =
      EncodeFrame(MessageType::kError, 99, EncodeErrorBody(status), /*checksum=*/true);
  absl::StatusOr<FrameView> view = ParseFrame(frame);
  ASSERT_TRUE(view.ok()) << view.status();
  ASSERT_EQ(view->header.type, MessageType::kError);
  absl::StatusOr<absl::Status> parsed = ParseErrorBody(view->body);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, status);
}

TEST(ErrorBody, RejectsEveryTruncation) {
  const std::string body = EncodeErrorBody(absl::NotFoundError("no such key"));
  for (size_t n = 0; n < body.size(); ++n) {
    EXPECT_EQ(ParseCode(absl::string_view(body).substr(0, n)),
              absl::StatusCode::kDataLoss)
        << n;
  }
}

TEST(ErrorBody, RejectsOkCode) {
  absl::Status status = ParseErrorBody(BodyWith(0, "fine")).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(status.message().find("status code 0"), absl::string_view::npos) << status;
}

TEST(ErrorBody, RejectsUnknownCodes) {
  for (int code = 17; code < 256; ++code) {
    EXPECT_EQ(ParseCode(BodyWith(static_cast<uint8_t>(code), "m")),
              absl::StatusCode::kDataLoss)
        << code;
  }
}

TEST(ErrorBody, RejectsTrailingBytes) {
  std::string body = EncodeErrorBody(absl::CancelledError("shutting down"));
  body.push_back('\0');
  absl::Status status = ParseErrorBody(body).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(status.message().find("trailing"), absl::string_view::npos) << status;
}

TEST(ErrorBody, RejectsMessageOverCap) {
  const std::string body = BodyWith(2, std::string(kMaxErrorMessageSize + 1, 'x'));
  EXPECT_EQ(ParseCode(body), absl::StatusCode::kDataLoss);
}

TEST(ErrorBody, RejectsLengthPrefixBeyondBody) {
  Writer w;
  w.PutU8(2);
  w.PutU32(100);
  w.PutRaw("short");
  EXPECT_EQ(ParseCode(w.Release()), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace wire
}  // namespace hivemind
