#define BOOST_TEST_MODULE molt
#include <boost/test/unit_test.hpp>
