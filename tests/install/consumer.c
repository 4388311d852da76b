/* A program built only against the installed library, as a user would build it. */
#include <iamclient.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    iam_keyset *ks = iam_keyset_new();
    static const char secret[] = "install-check-secret-0123456789abcdef";
    if (!ks || iam_keyset_add_hmac(ks, secret, strlen(secret), NULL, NULL) != IAM_OK)
        return 1;
    iam_user *u = NULL;
    iam_status st = iam_token_verify("not.a-token", 11, ks, NULL, 1900000000, &u, NULL);
    printf("%s\n", iam_status_name(st));
    iam_keyset_release(ks);
    return st == IAM_E_MALFORMED ? 0 : 1;
}
