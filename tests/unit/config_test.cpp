#include <gtest/gtest.h>

#include "base/config.h"

namespace pl {
namespace {

TEST(Config, DefaultsRoundTrip) {
    auto c = Config::parse("");
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(c->era, Era::current);
    auto again = Config::parse(c->to_string());
    ASSERT_TRUE(again.ok()) << Config::last_error();
    EXPECT_EQ(again->to_string(), c->to_string());
}

TEST(Config, ParsesEveryKey) {
    auto c = Config::parse("era=v5.10 ram=8G movable=1G cma=256M hugetlb_2m=4 hugetlb_1g=0 thp=madvise "
                           "arch.pte_special=off arch.gup_fast=off arch.pmd_special=off arch.pte_devmap=on");
    ASSERT_TRUE(c.ok()) << Config::last_error();
    EXPECT_EQ(c->era, Era::v5_10);
    EXPECT_EQ(c->ram, 8ULL << 30);
    EXPECT_EQ(c->movable, 1ULL << 30);
    EXPECT_EQ(c->cma, 256ULL << 20);
    EXPECT_EQ(c->hugetlb_2m, 4u);
    EXPECT_EQ(c->thp, ThpMode::madvise);
    EXPECT_FALSE(c->arch_pte_special);
    EXPECT_FALSE(c->arch_gup_fast);
    EXPECT_TRUE(c->arch_pte_devmap);
    EXPECT_TRUE(c->era_at_least(Era::v5_8));
    EXPECT_FALSE(c->era_at_least(Era::v5_11));
}

struct BadConfig {
    const char* text;
    const char* must_mention;
};

class ConfigErrors : public ::testing::TestWithParam<BadConfig> {};

TEST_P(ConfigErrors, NamesTheProblem) {
    auto c = Config::parse(GetParam().text);
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.error(), Error(EINVAL));
    EXPECT_NE(Config::last_error().find(GetParam().must_mention), std::string::npos) << Config::last_error();
}

INSTANTIATE_TEST_SUITE_P(All, ConfigErrors,
                         ::testing::Values(BadConfig{"bogus=1", "bogus"}, BadConfig{"era=v9.9", "v9.9"},
                                           BadConfig{"ram=lots", "lots"}, BadConfig{"thp=sometimes", "sometimes"},
                                           BadConfig{"arch.gup_fast=maybe", "maybe"},
                                           BadConfig{"ram", "not key=value"}, BadConfig{"ram=1M", "ram"},
                                           BadConfig{"ram=128M movable=128M", "movable"},
                                           BadConfig{"ram=1G hugetlb_1g=1", "hugetlb"},
                                           BadConfig{"ram=99999999999999999999G", "ram"}));

TEST(Config, SmallRamDropsDefaultGiganticReservation) {
    auto c = Config::parse("ram=512M");
    ASSERT_TRUE(c.ok()) << Config::last_error();
    EXPECT_EQ(c->hugetlb_1g, 0u);
    EXPECT_GT(c->hugetlb_2m, 0u);
}

TEST(ParseSize, Units) {
    EXPECT_EQ(*parse_size("4K"), 4096u);
    EXPECT_EQ(*parse_size("2m"), 2u << 20);
    EXPECT_FALSE(parse_size("").ok());
    EXPECT_FALSE(parse_size("G").ok());
    EXPECT_FALSE(parse_size("-1").ok());
    EXPECT_EQ(format_size(2ULL << 30), "2G");
    EXPECT_EQ(format_size(4097), "4097");
}

}  // namespace
}  // namespace pl
