import { ArgsType, Field, ObjectType } from 'type-graphql';
import { UserType } from '../user/user.types';

@ObjectType('AuthPayload')
export class AuthPayload {
  @Field() token!: string;
  @Field(() => UserType) user!: UserType;
  @Field(() => Date, { nullable: true }) expiresAt!: Date | null;
}

@ArgsType()
export class SignupArgs {
  @Field() username!: string;
  @Field() password!: string;
  @Field(() => String, { nullable: true }) displayName?: string | null;
}

@ArgsType()
export class LoginArgs {
  @Field() username!: string;
  @Field() password!: string;
}
